"""Writing image sequences: one PNG, TIFF or OpenEXR file per frame (FFmpeg's image
encoders through PyAV)."""

from __future__ import annotations

import os
from fractions import Fraction

import av
from av.video.codeccontext import VideoCodecContext

from vidfx.core.errors import MediaError
from vidfx.core.frame import ClipInfo, Frame
from vidfx.core.sink import Sink

from .convert import tensor_to_av
from .image_seq import PATTERN

IMAGE_CODECS = {".png": "png", ".tif": "tiff", ".tiff": "tiff", ".exr": "exr"}


def image_pix_fmt(codec: str, channels: int, bit_depth: int) -> str:
    """The pixel format one image codec stores for C channels at a bit depth."""
    if codec == "exr":
        return {1: "grayf32le", 3: "gbrpf32le", 4: "gbrapf32le"}[channels]
    if codec in ("png", "tiff"):
        if bit_depth <= 8:
            return {1: "gray", 3: "rgb24", 4: "rgba"}[channels]
        order = "be" if codec == "png" else "le"  # PNG stores 16-bit samples big-endian
        return {1: f"gray16{order}", 3: f"rgb48{order}", 4: f"rgba64{order}"}[channels]
    raise MediaError(f"image codec {codec!r} is not supported")


def frame_path(pattern: str, number: int) -> str:
    """The file name for one frame of a %d pattern."""
    return PATTERN.sub(lambda m: ("%" + m.group(1) + "d") % number, pattern, count=1)


class ImageSequenceWriter(Sink):
    """Writes one image per frame. Each image is written to a hidden temporary name and
    renamed when complete; ``abort`` removes every image this writer made."""

    def __init__(
        self,
        pattern: str,
        codec: str | None = None,
        bit_depth: str | int = "auto",
        exr: str = "half",
        start_number: int = 0,
        compression: str | None = None,
    ):
        if not PATTERN.search(os.path.basename(pattern)):
            root, ext = os.path.splitext(pattern)
            pattern = f"{root}_%06d{ext}"
        self.pattern = pattern
        ext = os.path.splitext(pattern)[1].lower()
        chosen = codec or IMAGE_CODECS.get(ext)
        if chosen is None or chosen not in ("png", "tiff", "exr"):
            raise MediaError(f"{pattern}: cannot write images of type {ext or '(none)'}")
        self.codec: str = chosen
        self.bit_depth = bit_depth
        self.exr = exr
        self.start_number = start_number
        self.compression = compression
        self.written: list[str] = []
        self._info: ClipInfo | None = None
        self._count = 0

    def open(self, info: ClipInfo) -> None:
        """Check the folder and set up the image encoder."""
        folder = os.path.dirname(self.pattern) or "."
        if not os.path.isdir(folder):
            raise MediaError(f"{self.pattern}: output folder {folder} does not exist")
        self._info = info
        depth = info.bit_depth if self.bit_depth in ("auto", None) else int(self.bit_depth)
        self.pix_fmt = image_pix_fmt(self.codec, info.channels, depth)

    def _context(self, width: int, height: int) -> VideoCodecContext:
        ctx = av.CodecContext.create(self.codec, "w")
        assert isinstance(ctx, VideoCodecContext)  # png, tiff and exr are picture codecs
        ctx.width, ctx.height, ctx.pix_fmt = width, height, self.pix_fmt
        ctx.time_base = Fraction(1, 25)
        options: dict[str, str] = {}
        if self.codec == "exr":
            options["format"] = self.exr
            options["compression"] = self.compression or "zip16"
        elif self.codec == "tiff":
            options["compression_algo"] = self.compression or "deflate"
        ctx.options = options
        return ctx

    def write(self, frame: Frame) -> None:
        """Encode and store one image (temporary name, then rename)."""
        if self._info is None:
            raise MediaError(f"{self.pattern}: writer is not open")
        data = frame.data
        vf = tensor_to_av(data, self.pix_fmt, self._info.colour)
        ctx = self._context(vf.width, vf.height)  # image encoders are cheap to open
        vf.pts = 0
        try:
            payload = b"".join(bytes(p) for p in ctx.encode(vf)) + b"".join(bytes(p) for p in ctx.encode(None))
        except av.FFmpegError as exc:
            raise MediaError(f"{self.pattern}: cannot encode {self.codec} ({exc})") from None
        target = frame_path(self.pattern, self.start_number + self._count)
        folder, name = os.path.split(target)
        temp = os.path.join(folder, f".{name}.partial")
        try:
            with open(temp, "wb") as fh:
                fh.write(payload)
            os.replace(temp, target)
        except OSError as exc:
            _remove(temp)
            self.abort()
            raise MediaError(f"{target}: cannot write ({exc.strerror or exc})") from None
        self.written.append(target)
        self._count += 1

    def close(self) -> None:
        """Nothing pending: every image was renamed into place when written."""

    def abort(self) -> None:
        """Remove the images written so far."""
        for path in self.written:
            _remove(path)
        self.written.clear()


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass
