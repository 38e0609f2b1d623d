"""Video file writer (PyAV) and ``make_sink``: one entry point for every output.

The writer locks the target path for the whole write (``output_lock``: a second run
writing the same output fails at ``open``), encodes into a uniquely named hidden temporary
file next to it and renames that on ``close()``; ``abort()`` (or any error) deletes it, so
a file at the target path is always complete. The clip's timecode goes on the video stream
(a ``tmcd`` track in MOV/MP4, the MXF timecode). Timing: the first frame's pts becomes 0 and every other frame keeps its
distance from it, in the clip's own time base, so VFR and missing-frame gaps survive;
each frame's duration (``meta["duration"]``) is written too, so the clip's total length
matches the source. Colour tags are written as given, and RGB->YUV uses that matrix/range.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from types import SimpleNamespace
from typing import Any, Literal

import av
from av.codec.context import ThreadType
from av.container import OutputContainer
from av.packet import Packet
from av.video.codeccontext import VideoCodecContext

from vidfx.core.errors import MediaError, ParamError
from vidfx.core.frame import ClipInfo, Frame
from vidfx.core.params import Param, resolve_params
from vidfx.core.sink import Sink

from .audio import AudioMuxer
from .convert import tensor_to_av
from .image_seq import is_sequence_path
from .output_lock import OutputLock, check_not_locked, remove_stale_temporaries, temporary_name
from .probe import MATRICES, PRIMARIES, RANGES, TRANSFERS, code_of
from .sequence_writer import ImageSequenceWriter, check_folder, output_timecode

# The FFmpeg encoders behind VIDEO_CODECS.
Encoder = Literal["libx264", "libx265", "prores_ks", "dnxhd", "ffv1"]

VIDEO_CODECS = ("h264", "h265", "prores_422hq", "prores_4444", "dnxhr_hqx", "ffv1")
IMAGE_CODECS = ("png", "tiff", "exr", "dpx")

WRITER_PARAMS: tuple[Param, ...] = (
    Param(
        "codec",
        "choice",
        "auto",
        choices=("auto",) + VIDEO_CODECS + IMAGE_CODECS,
        doc="Encoder. auto: by extension (.mp4/.mkv h264, .mov ProRes 422 HQ or 4444 with alpha, "
        ".mxf DNxHR HQX, image patterns png/tiff/exr/dpx).",
    ),
    Param("crf", "int", 18, min=0, max=51, doc="Quality for h264/h265 (lower is better)."),
    Param("preset", "str", "medium", doc="x264/x265 speed preset (ultrafast..veryslow)."),
    Param(
        "bit_depth",
        "choice",
        "auto",
        choices=("auto", "8", "10", "16"),
        doc="Bits per component; auto keeps the source depth (10-bit in -> 10-bit out).",
    ),
    Param("exr", "choice", "half", choices=("half", "float"), doc="OpenEXR sample type."),
    Param(
        "audio",
        "choice",
        "auto",
        choices=("auto", "copy", "aac", "pcm", "none"),
        doc="auto: copy when possible, else re-encode (AAC; PCM where AAC cannot go).",
    ),
    Param("audio_bitrate", "int", 192000, min=8000, max=1_536_000, doc="AAC bit rate (bits/s)."),
    Param("pix_fmt", "str", None, doc="Override the encoder's pixel format (e.g. yuv444p10le)."),
    Param("threads", "int", 0, min=0, max=256, doc="Encoder threads (0: automatic)."),
    Param("gop", "int", 0, min=0, max=10000, doc="Keyframe interval for h264/h265/ffv1 (0: encoder default)."),
    Param(
        "start_number",
        "int",
        None,
        min=0,
        doc="First file number of an image sequence (default: the clip's own frame number, else 0).",
    ),
)

# FFmpeg's "unspecified" value of each colour property of a frame.
UNSPECIFIED = {"color_primaries": 2, "color_trc": 2, "colorspace": 2, "color_range": 0}

# Which codec each extension gets with codec=auto: (3-channel, 4-channel).
AUTO_CODEC = {
    ".mp4": ("h264", "h264"),
    ".m4v": ("h264", "h264"),
    ".mkv": ("h264", "ffv1"),
    ".mov": ("prores_422hq", "prores_4444"),
    ".mxf": ("dnxhr_hqx", "dnxhr_hqx"),
    ".avi": ("ffv1", "ffv1"),
}
CONTAINER_CODECS = {
    ".mp4": {"h264", "h265"},
    ".m4v": {"h264", "h265"},
    ".mov": {"h264", "h265", "prores_422hq", "prores_4444", "dnxhr_hqx"},
    ".mxf": {"dnxhr_hqx", "h264"},
    ".avi": {"ffv1", "h264"},
    ".mkv": set(VIDEO_CODECS),
}


def writer_options(values: dict[str, Any] | None = None, owner: str = "output") -> SimpleNamespace:
    """Validate output options against WRITER_PARAMS (ParamError naming ``owner``)."""
    return resolve_params(WRITER_PARAMS, dict(values or {}), owner=owner)


def make_sink(path: str | os.PathLike[str], **options: Any) -> Sink:
    """The Sink for ``path``: an image-sequence writer for ``%d`` patterns, folders or image
    extensions (png/tif/tiff/exr/dpx), else a video file writer. Options: WRITER_PARAMS."""
    path = os.fspath(path)
    opts = writer_options(options, owner=f"output {path}")
    if is_sequence_path(path) or opts.codec in IMAGE_CODECS:
        codec = opts.codec if opts.codec in IMAGE_CODECS else None
        if opts.codec not in ("auto",) + IMAGE_CODECS:
            raise ParamError(f"output {path}: codec {opts.codec} cannot write images")
        return ImageSequenceWriter(
            path, codec=codec, bit_depth=opts.bit_depth, exr=opts.exr, start_number=opts.start_number
        )
    return VideoWriter(path, opts)


def check_output(path: str | os.PathLike[str], info: ClipInfo | None = None, **options: Any) -> None:
    """Check an output without writing anything: the options, the codec against the container
    and (given the clip's ``info``) against its bit depth, alpha and size, that the output
    folder exists and is writable, and that no other run is writing the output. Raises the
    ParamError/MediaError that ``make_sink(path, **options).open(info)`` would raise."""
    sink = make_sink(path, **options)
    assert isinstance(sink, (VideoWriter, ImageSequenceWriter))  # what make_sink makes
    sink.check(info)


@dataclass(frozen=True)
class VideoPlan:
    """How a video output will be encoded: vidfx codec, bits, FFmpeg encoder, pixel format
    and encoder options."""

    codec: str
    depth: int
    encoder: Encoder
    pix_fmt: str
    options: dict[str, str]


def plan_video(path: str, opts: SimpleNamespace, info: ClipInfo | None) -> VideoPlan | None:
    """Check a video output's folder, container and codec (and, given ``info``, the bit
    depth, alpha and size); the encoding plan, or None without ``info``."""
    check_folder(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in AUTO_CODEC:
        raise MediaError(
            f"{path}: unknown video container {ext or '(no extension)'}; "
            f"use one of {', '.join(AUTO_CODEC)} or an image pattern"
        )
    codec = opts.codec
    if codec == "auto":
        codec = AUTO_CODEC[ext][1 if info is not None and info.channels == 4 else 0]
    if codec not in CONTAINER_CODECS[ext]:
        homes = [e for e, codecs in CONTAINER_CODECS.items() if codec in codecs and e != ".m4v"]
        raise ParamError(
            f"output {path}: codec {codec} cannot be stored in {ext} (use {' or '.join(homes) or 'another codec'})"
        )
    if opts.bit_depth != "auto" and int(opts.bit_depth) > _MAX_DEPTH[codec]:
        allowed = "8 or 10" if _MAX_DEPTH[codec] == 10 else "8, 10 or 16"
        raise ParamError(f"output {path}: {codec} is written with {allowed} bits, not {opts.bit_depth}")
    if info is None:
        return None
    depth = _pick_depth(opts.bit_depth, info, codec)
    try:
        encoder, pix_fmt, options = encoder_setup(codec, info.channels, depth, info.width, info.height)
    except (ParamError, MediaError) as exc:
        raise type(exc)(f"output {path}: {exc}") from None
    pix_fmt = opts.pix_fmt or pix_fmt
    _check_pix_fmt(path, encoder, pix_fmt, info)
    return VideoPlan(codec, depth, encoder, pix_fmt, options)


# the most bits per component each codec stores (ProRes 4444 carries 12-bit in FFmpeg's decoder,
# but vidfx writes ProRes and DNxHR at 10)
_MAX_DEPTH = {"h264": 10, "h265": 10, "prores_422hq": 10, "prores_4444": 10, "dnxhr_hqx": 10, "ffv1": 16}


def _check_pix_fmt(path: str, encoder: str, pix_fmt: str, info: ClipInfo) -> None:
    """ParamError for a pixel format the encoder cannot take, or whose chroma subsampling
    needs an even width/height the clip does not have."""
    try:
        fmt = av.VideoFormat(pix_fmt, 4, 4)
    except (ValueError, av.FFmpegError):
        raise ParamError(f"output {path}: unknown pixel format {pix_fmt!r}") from None
    supported = [f.name for f in av.codec.Codec(encoder, "w").video_formats or ()]
    if supported and pix_fmt not in supported:
        raise ParamError(f"output {path}: {encoder} cannot encode {pix_fmt} (it takes {', '.join(supported)})")
    # x264/x265 refuse odd sizes in subsampled formats (ProRes and DNxHR pad them)
    chroma = fmt.components[1] if encoder in ("libx264", "libx265") and len(fmt.components) > 2 else None
    if chroma is not None and (chroma.width < 4 and info.width % 2 or chroma.height < 4 and info.height % 2):
        raise ParamError(
            f"output {path}: {pix_fmt} subsamples chroma and needs an even width and height, "
            f"not {info.width}x{info.height} (use a 4:4:4 pix_fmt or resize)"
        )


def encoder_setup(
    codec: str, channels: int, depth: int, width: int, height: int
) -> tuple[Encoder, str, dict[str, str]]:
    """(FFmpeg encoder, pix_fmt, encoder options) for a vidfx codec name, channels and depth."""
    odd = width % 2 or height % 2
    if codec in ("h264", "h265"):
        if depth > 10:
            raise ParamError(f"{codec} is written with 8 or 10 bits, not {depth}")
        sub = "444" if odd else "420"
        pix = f"yuv{sub}p10le" if depth > 8 else f"yuv{sub}p"
        if codec == "h264":
            return "libx264", pix, {}
        return "libx265", pix, {"x265-params": "log-level=error"}
    if codec == "prores_422hq":
        return "prores_ks", "yuv422p10le", {"profile": "3", "vendor": "apl0"}
    if codec == "prores_4444":
        pix = "yuva444p10le" if channels == 4 else "yuv444p10le"
        return "prores_ks", pix, {"profile": "4", "vendor": "apl0", "alpha_bits": "16"}
    if codec == "dnxhr_hqx":
        if width < 256 or height < 120:
            raise ParamError(f"DNxHR needs at least 256x120 pixels, not {width}x{height}")
        return "dnxhd", "yuv422p10le", {"profile": "dnxhr_hqx"}
    if codec == "ffv1":
        bits = 8 if depth <= 8 else 10 if depth <= 10 else 16
        if channels == 1:
            pix = {8: "gray", 10: "gray10le", 16: "gray16le"}[bits]
        elif channels == 4:
            pix = {8: "bgra", 10: "gbrap10le", 16: "gbrap16le"}[bits]
        else:
            pix = {8: "bgr0", 10: "gbrp10le", 16: "gbrp16le"}[bits]
        return "ffv1", pix, {"level": "3", "slicecrc": "1"}
    raise ParamError(f"unknown video codec {codec!r}")


def _pick_depth(option: str, info: ClipInfo, codec: str) -> int:
    if option != "auto":
        return int(option)
    if codec in ("prores_422hq", "prores_4444", "dnxhr_hqx"):
        return 10
    if info.bit_depth <= 8:
        return 8
    if codec == "ffv1" and info.bit_depth > 10:
        return 16
    return 10


class VideoWriter(Sink):
    """Encodes frames into a video file (h264/h265/ProRes/DNxHR/FFV1) with optional audio."""

    def __init__(self, path: str, options: SimpleNamespace | None = None, **values: Any):
        self.path = os.fspath(path)
        self.opts = options if options is not None else writer_options(values, f"output {path}")
        self.ext = os.path.splitext(self.path)[1].lower()
        self.temp: str | None = None
        self.lock = OutputLock(self.path)  # taken in open(); release() is idempotent
        self.container: OutputContainer | None = None
        self.stream: av.VideoStream | None = None
        self.audio: AudioMuxer | None = None
        self.frames_written = 0
        self.fast_frames = 0  # frames encoded straight from the decoder's frame

    # --- set-up --------------------------------------------------------------------------
    def check(self, info: ClipInfo | None) -> None:
        """Everything ``open`` refuses (``check_output``), creating nothing."""
        plan_video(self.path, self.opts, info)
        check_not_locked(self.path)

    def open(self, info: ClipInfo) -> None:
        """Check the output (as ``check_output``), lock the target path, create the
        temporary file and the video (and audio) streams."""
        plan = plan_video(self.path, self.opts, info)
        assert plan is not None  # given info, plan_video plans
        codec, encoder, options = plan.codec, plan.encoder, dict(plan.options)
        self.codec = codec
        self.info = info
        self.depth = plan.depth
        self.pix_fmt = plan.pix_fmt
        self.time_base = info.time_base or 1 / info.fps
        self.frame_ticks = 1 / info.fps / self.time_base  # nominal frame duration in time_base
        if codec in ("h264", "h265"):
            options.update(crf=str(self.opts.crf), preset=self.opts.preset)
        if self.opts.gop and codec in ("h264", "h265", "ffv1"):
            options["g"] = str(self.opts.gop)

        self.lock.acquire()
        try:
            remove_stale_temporaries(self.path)
            self.temp = temporary_name(self.path, self.ext)
            self.container = av.open(self.temp, "w", format=_muxer(self.ext))
            stream = self.container.add_stream(encoder, rate=info.fps, options=options)
            timecode = output_timecode(info, self.path)
            if timecode is not None:
                # the mov/mp4 muxers write a tmcd track from it, the mxf muxer its timecode
                stream.metadata["timecode"] = str(timecode)
            stream.width, stream.height, stream.pix_fmt = info.width, info.height, self.pix_fmt
            stream.time_base = self.time_base
            ctx = stream.codec_context
            ctx.time_base = self.time_base
            ctx.framerate = info.fps
            ctx.thread_count = self.opts.threads
            ctx.thread_type = ThreadType.AUTO
            if info.sample_aspect_ratio:
                ctx.sample_aspect_ratio = info.sample_aspect_ratio
            self._tag_colour(ctx)
            if codec == "h265" and self.ext in (".mp4", ".mov", ".m4v"):
                ctx.codec_tag = "hvc1"  # what Apple players expect
            self.stream = stream
            if info.audio is not None and self.opts.audio != "none":
                self.audio = AudioMuxer(info.audio, self.container, self.opts.audio, self.opts.audio_bitrate)
        except av.FFmpegError as exc:
            raise self._failed(exc, f"cannot set up {codec} encoder") from None
        except OSError as exc:
            raise self._failed(exc, "cannot create output") from None
        except Exception:
            self.abort()
            raise
        self._first_pts: int | None = None
        self._last_pts: int | None = None
        self._end_pts = 0  # end of the last frame written (output time base)
        self._durations: dict[int, int] = {}

    def _tag_colour(self, ctx: VideoCodecContext) -> None:
        """Put the clip's colour tags on the encoder (and, in ``write``, on every frame:
        some encoders, ProRes among them, take them from the frames)."""
        colour = self.info.colour
        tags: dict[str, int] = {}
        for attr, table, value in (
            ("color_primaries", PRIMARIES, colour.primaries),
            ("color_trc", TRANSFERS, colour.transfer),
            ("color_range", RANGES, colour.range),
            ("colorspace", MATRICES, colour.matrix),
        ):
            code = code_of(table, value)
            if code is not None:
                tags[attr] = code
        if not self.pix_fmt.startswith("yuv"):
            tags.update(colorspace=0, color_range=2)  # RGB: no matrix, full range
        for attr, code in tags.items():
            setattr(ctx, attr, code)
        self.colour_tags = tags

    # --- writing -------------------------------------------------------------------------
    def _timing(self, frame: Frame) -> tuple[int, int]:
        """Output pts and duration of ``frame`` (relative to the first frame, increasing)."""
        pts = frame.pts
        if self._first_pts is None:
            self._first_pts = pts if pts is not None else 0
        if pts is None:
            out = round(self.frames_written * self.frame_ticks)
        else:
            out = pts - self._first_pts
        if self._last_pts is not None and out <= self._last_pts:
            out = self._end_pts if self._end_pts > self._last_pts else self._last_pts + 1
        # the frame's own duration (from the decoder) unless a node changed the spacing of
        # frames (e.g. kept every 2nd): then the spacing is the better guess
        spacing = out - self._last_pts if self._last_pts is not None else self.frame_ticks
        duration = frame.meta.get("duration")
        if not duration or not 0.75 * spacing <= duration <= 1.5 * spacing:
            duration = spacing
        return out, max(1, int(round(duration)))

    def _to_av(self, frame: Frame) -> av.VideoFrame:
        native = frame.native
        if (
            not frame.loaded
            and isinstance(native, av.VideoFrame)
            and native.format.name == self.pix_fmt
            and native.width == self.info.width
            and native.height == self.info.height
        ):
            self.fast_frames += 1
            native.pict_type = av.video.frame.PictureType.NONE  # let the encoder choose frame types
            return native
        data = frame.data
        if tuple(data.shape[1:]) != (self.info.height, self.info.width):
            raise MediaError(
                f"{self.path}: frame {frame.index} is {data.shape[2]}x{data.shape[1]}, "
                f"the output is {self.info.width}x{self.info.height}"
            )
        return tensor_to_av(data, self.pix_fmt, self.info.colour)

    def write(self, frame: Frame) -> None:
        """Encode one frame (and the audio that goes with it)."""
        container, stream, _ = self._output()
        pts, duration = self._timing(frame)
        vf = self._to_av(frame)
        for attr, unset in UNSPECIFIED.items():  # untagged stays untagged (swscale tags frames)
            setattr(vf, attr, self.colour_tags.get(attr, unset))
        vf.pts = pts
        vf.time_base = self.time_base
        vf.duration = duration
        self._durations[pts] = duration
        self._last_pts, self._end_pts = pts, pts + duration
        self._guard(lambda: self._mux_video(container, stream.encode(vf)))
        self.frames_written += 1
        audio = self.audio
        if audio is not None:
            self._guard(lambda: audio.feed_until(float(pts * self.time_base)))

    def _output(self) -> tuple[OutputContainer, av.VideoStream, str]:
        """The open container, its video stream and the temporary file they are written to;
        MediaError if the writer is not open (or failed earlier)."""
        if self.container is None or self.stream is None or self.temp is None:
            raise MediaError(f"{self.path}: writer is not open (or failed earlier)")
        return self.container, self.stream, self.temp

    def _mux_video(self, container: OutputContainer, packets: list[Packet]) -> None:
        for packet in packets:
            if packet.pts is not None and packet.pts in self._durations:
                packet.duration = self._durations.pop(packet.pts)
            self._guard(partial(container.mux, packet))

    def _guard(self, action: Callable[[], object]) -> None:
        """Run a muxing step; on failure remove the partial file and raise MediaError."""
        try:
            action()
        except (av.FFmpegError, OSError) as exc:
            raise self._failed(exc, "write failed") from None

    def _failed(self, exc: av.FFmpegError | OSError, what: str) -> MediaError:
        """Remove the partial file; the MediaError saying ``what`` failed and why."""
        self.abort()
        reason = _why(exc) if isinstance(exc, av.FFmpegError) else exc.strerror or exc
        return MediaError(f"{self.path}: {what} ({reason})")

    def close(self) -> None:
        """Flush the encoders, finish the file and rename it into place."""
        if self.container is None:
            return
        try:
            if self.frames_written == 0:
                raise MediaError(f"{self.path}: no frames to write")
            container, stream, temp = self._output()
            self._mux_video(container, stream.encode(None))
            audio = self.audio
            if audio is not None:
                self._guard(lambda: audio.finish(float(self._end_pts * self.time_base)))
            self._guard(container.close)
            self.container = None
            _check_written(temp, self.path)
            os.replace(temp, self.path)
            self.temp = None
            self.lock.release()
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Drop the temporary file and the lock (nothing at the target path is touched).
        Safe to call more than once, and after ``close``."""
        audio, self.audio = self.audio, None
        if audio is not None:
            audio.close()
        container, self.container = self.container, None
        temp, self.temp = self.temp, None
        try:
            if container is not None:
                try:
                    container.close()
                except Exception:  # already failing; the file is removed below
                    pass
            if temp and os.path.exists(temp):
                os.remove(temp)
        finally:
            self.lock.release()


def _muxer(ext: str) -> str:
    return {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".mxf": "mxf", ".avi": "avi"}[ext]


def _why(exc: Exception) -> str:
    """A short reason from a PyAV error (FFmpeg's own log line when it gave one)."""
    if getattr(exc, "errno", None) == errno.ENOSPC:
        return "no space left on device"
    text = str(exc)
    if "last error log:" in text:
        return text.split("last error log:", 1)[1].strip().splitlines()[0]
    text = getattr(exc, "strerror", None) or text
    return text.split(": '")[0]


def _check_written(temp: str, path: str) -> None:
    """MediaError if the finished temporary file is missing or empty (e.g. a full disk that
    the muxer did not report)."""
    if not os.path.exists(temp) or os.path.getsize(temp) == 0:
        raise MediaError(f"{path}: output could not be written (empty file)")


class _FileSinks:
    """vidfx's file writers as the core's ``FileSinks`` (entry point ``vidfx.sinks: file``)."""

    params = WRITER_PARAMS

    def __call__(self, path: str, **options: Any) -> Sink:
        return make_sink(path, **options)

    def check(self, path: str, info: ClipInfo | None = None, **options: Any) -> None:
        """``check_output``: everything ``open`` would refuse, without writing anything."""
        check_output(path, info, **options)


FILE_SINKS = _FileSinks()
