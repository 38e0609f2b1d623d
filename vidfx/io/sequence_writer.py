"""Writing image sequences: one PNG, TIFF, OpenEXR or DPX file per frame (FFmpeg's image
encoders through PyAV).

Nothing with a final name appears before the run succeeds: the writer locks the pattern
(``output_lock``), writes every image into a hidden folder next to the output
(``.NAME.partial-<random>/``) and moves them into place on ``close()``; ``abort()`` removes
that folder. A process killed outright leaves only the hidden folder, which the next run
writing the same pattern removes.
"""

from __future__ import annotations

import logging
import os
from fractions import Fraction

import av
from av.video.codeccontext import VideoCodecContext

from vidfx.core.errors import MediaError, ParamError
from vidfx.core.frame import ClipInfo, Frame
from vidfx.core.sink import Sink
from vidfx.core.timecode import Timecode, is_drop_rate, nominal_rate

from . import dpx, exr_header
from .convert import tensor_to_av
from .image_seq import find_placeholder
from .output_lock import OutputLock, check_not_locked, remove_path, remove_stale_temporaries, temporary_name

IMAGE_CODECS = {".png": "png", ".tif": "tiff", ".tiff": "tiff", ".exr": "exr", ".dpx": "dpx"}

log = logging.getLogger(__name__)


def output_timecode(info: ClipInfo, where: str) -> Timecode | None:
    """The clip's timecode if it counts at the clip's own rate (drop-frame only at 29.97/59.94),
    else None with a warning: a label counted at another rate does not describe these frames,
    and muxers refuse it (FFmpeg's MXF muxer fails the whole file)."""
    tc = info.timecode
    if tc is None:
        return None
    if tc.rate != nominal_rate(info.fps) or (tc.drop and not is_drop_rate(info.fps)):
        log.warning("%s: timecode %s (at %d fps) not written: the output runs at %s fps", where, tc, tc.rate, info.fps)
        return None
    return tc


def image_pix_fmt(codec: str, channels: int, bit_depth: int) -> str:
    """The pixel format one image codec stores for C channels at a bit depth."""
    if codec == "exr":
        return {1: "grayf32le", 3: "gbrpf32le", 4: "gbrapf32le"}[channels]
    if codec in ("png", "tiff"):
        if bit_depth <= 8:
            return {1: "gray", 3: "rgb24", 4: "rgba"}[channels]
        order = "be" if codec == "png" else "le"  # PNG stores 16-bit samples big-endian
        return {1: f"gray16{order}", 3: f"rgb48{order}", 4: f"rgba64{order}"}[channels]
    if codec == "dpx":
        # FFmpeg's DPX encoder: 10/12-bit only as planar RGB (packed into 32-bit words), RGBA
        # with 8 or 16 bits; little-endian formats convert straight from vidfx's planes
        if bit_depth <= 8:
            return {1: "gray", 3: "rgb24", 4: "rgba"}[channels]
        if bit_depth <= 10 and channels == 3:
            return "gbrp10le"
        if bit_depth <= 10 and channels == 4:
            raise ParamError("DPX with alpha is written with 8 or 16 bits, not 10 (FFmpeg's encoder)")
        return {1: "gray16le", 3: "rgb48le", 4: "rgba64le"}[channels]
    raise MediaError(f"image codec {codec!r} is not supported")


def dpx_depth(channels: int, option: str | int) -> int:
    """The bit depth a DPX output gets: 10 by default (16 with alpha), else as asked."""
    if option in ("auto", None):
        return 16 if channels == 4 else 10
    return int(option)


def frame_path(pattern: str, number: int) -> str:
    """The file name for one frame of a %d pattern, printf-style (``%%`` is a literal ``%``,
    as the reader takes it)."""
    folder, name = os.path.split(pattern)
    match = find_placeholder(name)
    if match is None:
        return pattern
    head, tail = name[: match.start()], name[match.end() :]
    number_text = ("%" + match.group(1) + "d") % number
    return os.path.join(folder, head.replace("%%", "%") + number_text + tail.replace("%%", "%"))


def sequence_pattern(path: str) -> str:
    """The %d pattern written for an output path (``name.png`` -> ``name_%06d.png``)."""
    if find_placeholder(os.path.basename(path)):
        return path
    root, ext = os.path.splitext(path)
    return f"{root}_%06d{ext}"


def check_folder(path: str) -> None:
    """MediaError unless the folder ``path`` goes into exists and this process may write there."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise MediaError(f"{path}: output folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise MediaError(f"{path}: output folder {folder} is not writable")


class ImageSequenceWriter(Sink):
    """Writes one image per frame into a hidden folder and moves them all into place on
    ``close``; ``abort`` removes the folder. Frame numbers start at ``start_number``, or
    by default at the clip's own ``first_number`` (else 0)."""

    def __init__(
        self,
        pattern: str,
        codec: str | None = None,
        bit_depth: str | int = "auto",
        exr: str = "half",
        start_number: int | None = None,
        compression: str | None = None,
    ):
        self.pattern = sequence_pattern(pattern)
        ext = os.path.splitext(self.pattern)[1].lower()
        chosen = codec or IMAGE_CODECS.get(ext)
        if chosen is None or chosen not in IMAGE_CODECS.values():
            raise MediaError(f"{self.pattern}: cannot write images of type {ext or '(none)'}")
        self.codec: str = chosen
        self.bit_depth = bit_depth
        self.exr = exr
        self.start_number = start_number
        self.compression = compression
        self.written: list[str] = []  # final paths, filled by close()
        self.temp_dir: str | None = None
        self.lock = OutputLock(self.pattern)  # taken in open(); release() is idempotent
        self._pending: list[tuple[str, str]] = []  # (temporary file, final path)
        self._info: ClipInfo | None = None
        self._timecode: Timecode | None = None
        self._first = 0

    def check(self, info: ClipInfo | None) -> None:
        """Everything ``open`` refuses (folder, codec against depth and alpha, another run
        writing this pattern), creating nothing."""
        check_folder(self.pattern)
        if info is not None:
            self._pix_fmt(info)
        check_not_locked(self.pattern)

    def _pix_fmt(self, info: ClipInfo) -> str:
        if self.codec == "dpx":
            depth = dpx_depth(info.channels, self.bit_depth)
        else:
            depth = info.bit_depth if self.bit_depth in ("auto", None) else int(self.bit_depth)
        try:
            return image_pix_fmt(self.codec, info.channels, depth)
        except ParamError as exc:
            raise ParamError(f"output {self.pattern}: {exc}") from None

    def open(self, info: ClipInfo) -> None:
        """Check the output, lock the pattern and create the hidden folder for the images."""
        check_folder(self.pattern)
        self.pix_fmt = self._pix_fmt(info)
        self._info = info
        self._timecode = output_timecode(info, self.pattern)
        if self.start_number is not None:
            self._first = self.start_number
        else:
            self._first = info.first_number if info.first_number is not None else 0
        self.lock.acquire()
        try:
            remove_stale_temporaries(self.pattern)
            self.temp_dir = temporary_name(self.pattern)
            os.mkdir(self.temp_dir)
        except OSError as exc:
            self.abort()
            raise MediaError(f"{self.pattern}: cannot create a temporary folder ({exc.strerror or exc})") from None

    def _context(self, width: int, height: int) -> VideoCodecContext:
        ctx = av.CodecContext.create(self.codec, "w")
        assert isinstance(ctx, VideoCodecContext)  # the image codecs are picture codecs
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

    def _encode(self, frame: Frame, info: ClipInfo) -> bytes:
        """One frame as the bytes of an image file, with its timecode where the format has one."""
        vf = tensor_to_av(frame.data, self.pix_fmt, info.colour)
        ctx = self._context(vf.width, vf.height)  # image encoders are cheap to open
        vf.pts = 0
        try:
            payload = b"".join(bytes(p) for p in ctx.encode(vf)) + b"".join(bytes(p) for p in ctx.encode(None))
        except av.FFmpegError as exc:
            raise MediaError(f"{self.pattern}: cannot encode {self.codec} ({exc})") from None
        timecode = None if self._timecode is None else self._timecode + len(self._pending)
        if self.codec == "dpx":
            payload = dpx.add_industry_headers(payload, timecode, info.fps)
        elif self.codec == "exr":
            payload = exr_header.add_rate(payload, info.fps, self.pattern)  # Nuke reads the rate from here
            if timecode is not None:
                payload = exr_header.add_timecode(payload, timecode, self.pattern)
        return payload

    def write(self, frame: Frame) -> None:
        """Encode one image into the hidden folder."""
        info = self._info
        if info is None or self.temp_dir is None:
            raise MediaError(f"{self.pattern}: writer is not open (or failed earlier)")
        payload = self._encode(frame, info)
        target = frame_path(self.pattern, self._first + len(self._pending))
        temp = os.path.join(self.temp_dir, os.path.basename(target))
        try:
            with open(temp, "wb") as fh:
                fh.write(payload)
        except OSError as exc:
            self.abort()
            raise MediaError(f"{target}: cannot write ({exc.strerror or exc})") from None
        self._pending.append((temp, target))

    def close(self) -> None:
        """Move every image to its final name, remove the hidden folder and the lock."""
        if self.temp_dir is None:
            return
        try:
            for temp, target in self._pending:
                os.replace(temp, target)
                self.written.append(target)
            os.rmdir(self.temp_dir)
        except OSError as exc:
            self.abort()
            raise MediaError(f"{self.pattern}: cannot move the images into place ({exc.strerror or exc})") from None
        self.temp_dir = None
        self._pending.clear()
        self.lock.release()

    def abort(self) -> None:
        """Remove the hidden folder with every image in it, and the lock. Safe to call more
        than once, and after ``close`` (which it leaves alone)."""
        temp_dir, self.temp_dir = self.temp_dir, None
        self._pending.clear()
        try:
            if temp_dir is not None:
                remove_path(temp_dir)
        finally:
            self.lock.release()
