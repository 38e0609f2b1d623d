"""Image sequences: PNG (8/16-bit), TIFF (8/16-bit), OpenEXR (half/float), with alpha.

A sequence is named by a printf pattern (``shots/a_%04d.png``) or a folder of images.
Files are decoded and encoded one at a time with FFmpeg's image codecs through PyAV.
"""

from __future__ import annotations

import os
import re
from fractions import Fraction

import av
import torch
from av.video.codeccontext import VideoCodecContext

from vidfx.core.errors import MediaError
from vidfx.core.frame import ClipInfo, ColourTags, EndOfStream, Frame
from vidfx.core.sink import Sink

from .convert import av_to_tensor, tensor_to_av
from .pixfmt import bit_depth_of, has_alpha, is_grey, is_yuv

IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".exr", ".jpg", ".jpeg", ".dpx", ".bmp")
_PATTERN = re.compile(r"%(0?\d*)d")


def is_sequence_path(path: str) -> bool:
    """Whether ``path`` names an image sequence (a %d pattern, a folder, or one image)."""
    return (
        bool(_PATTERN.search(os.path.basename(path))) or os.path.isdir(path) or path.lower().endswith(IMAGE_EXTENSIONS)
    )


def parse_fps(value: str | float | int | Fraction) -> Fraction:
    """An exact rate from ``25``, ``"24000/1001"``, ``"29.97"`` (-> 30000/1001) and the like."""
    text = str(value).strip()
    try:
        fps = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise MediaError(f"bad frame rate {value!r}") from None
    ntsc = {
        "23.976": Fraction(24000, 1001),
        "29.97": Fraction(30000, 1001),
        "59.94": Fraction(60000, 1001),
        "47.952": Fraction(48000, 1001),
    }
    fps = ntsc.get(text, fps)
    if fps <= 0:
        raise MediaError(f"bad frame rate {value!r}")
    return fps


def list_sequence(path: str) -> list[str]:
    """The files of a sequence in frame order (numbers ascending); MediaError if none."""
    if os.path.isdir(path):
        files = [
            os.path.join(path, f)
            for f in os.listdir(path)
            if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")
        ]
        key = lambda f: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", f)]  # noqa: E731
        files.sort(key=key)
    else:
        folder, name = os.path.split(path)
        folder = folder or "."
        match = _PATTERN.search(name)
        if not match:
            files = [path] if os.path.exists(path) else []
        else:
            width = match.group(1)
            digits = rf"\d{{{int(width)},}}" if width else r"\d+"
            regex = re.compile(re.escape(name[: match.start()]) + f"({digits})" + re.escape(name[match.end() :]) + "$")
            if not os.path.isdir(folder):
                raise MediaError(f"{path}: folder {folder} not found")
            numbered = [(int(m.group(1)), f) for f in os.listdir(folder) if (m := regex.match(f))]
            files = [os.path.join(folder, f) for _, f in sorted(numbered)]
    if not files:
        raise MediaError(f"{path}: no images found")
    return files


def read_image(path: str) -> av.VideoFrame:
    """Decode one image file; MediaError naming it if it is missing or corrupt."""
    try:
        with av.open(path) as container:
            for frame in container.decode(video=0):
                return frame
    except (av.FFmpegError, OSError) as exc:
        raise MediaError(f"{path}: cannot read image ({getattr(exc, 'strerror', None) or exc})") from None
    raise MediaError(f"{path}: no picture in file")


class ImageSequenceDecoder:
    """Reads frame ``n`` of a sequence as a lazy Frame (pts = n, time base = 1/fps)."""

    def __init__(self, path: str, fps: Fraction):
        self.path = path
        self.fps = fps
        self.files: list[str] = []
        self.info: ClipInfo | None = None

    def open(self) -> ClipInfo:
        """List the files and describe the sequence from its first image."""
        self.files = list_sequence(self.path)
        first = read_image(self.files[0])
        pix_fmt = first.format.name
        depth = bit_depth_of(pix_fmt)
        is_exr = self.files[0].lower().endswith(".exr")
        # JPEG-style images are Y'CbCr with the BT.601 matrix at full range, whatever their size
        colour = ColourTags(
            primaries="bt709",
            transfer="linear" if is_exr else "iec61966-2-1",
            matrix="smpte170m" if is_yuv(pix_fmt) else None,
            range="pc",
        )
        self.info = ClipInfo(
            width=first.width,
            height=first.height,
            fps=self.fps,
            num_frames=len(self.files),
            channels=4 if has_alpha(pix_fmt) else 1 if is_grey(pix_fmt) else 3,
            bit_depth=depth,
            colour=colour,
            time_base=1 / self.fps,
            source=self.path,
            pix_fmt=pix_fmt,
            codec=os.path.splitext(self.files[0])[1].lstrip(".").lower(),
        )
        return self.info

    def get(self, n: int) -> Frame:
        """Frame ``n``; EndOfStream past the last file."""
        info = self.info if self.info is not None else self.open()
        if n >= len(self.files):
            raise EndOfStream(len(self.files))
        path = self.files[n]

        def load() -> torch.Tensor:
            vf = read_image(path)
            if (vf.width, vf.height) != (info.width, info.height):
                raise MediaError(
                    f"{path}: size {vf.width}x{vf.height} differs from the sequence's {info.width}x{info.height}"
                )
            return av_to_tensor(vf, info.channels, info.bit_depth, info.colour)

        return Frame(index=n, pts=n, load=load, meta={"duration": 1, "file": path})

    def close(self) -> None:
        """Nothing to release (files are opened per frame)."""


# --- writing -----------------------------------------------------------------------------

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
    return _PATTERN.sub(lambda m: ("%" + m.group(1) + "d") % number, pattern, count=1)


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
        if not _PATTERN.search(os.path.basename(pattern)):
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
