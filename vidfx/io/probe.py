"""probe(path): describe a media file as a ClipInfo without decoding the whole video.

The frame count is the number of frames FFmpeg will actually decode, not the container's
packet count: MP4 edit lists can mark packets as "discard" (pillow.mp4 has 149 packets
but 147 frames decode). For MP4/MOV we read that from the demuxer's index (no file
reading at all); for other containers we scan the packets once without decoding.
"""

from __future__ import annotations

import os
from fractions import Fraction

import av
from av.container import InputContainer
from av.stream import Stream

from vidfx.core.errors import MediaError
from vidfx.core.frame import AudioRef, ClipInfo, ColourTags
from vidfx.core.timecode import Timecode

from .image_seq import ImageSequenceDecoder, is_image_input
from .pixfmt import bit_depth_of, has_alpha, is_grey, is_rgb

# FFmpeg's names for the AVColor* enums (libavutil/pixdesc.c), by value.
PRIMARIES = {
    1: "bt709",
    4: "bt470m",
    5: "bt470bg",
    6: "smpte170m",
    7: "smpte240m",
    8: "film",
    9: "bt2020",
    10: "smpte428",
    11: "smpte431",
    12: "smpte432",
    22: "ebu3213",
}
TRANSFERS = {
    1: "bt709",
    4: "gamma22",
    5: "gamma28",
    6: "smpte170m",
    7: "smpte240m",
    8: "linear",
    9: "log100",
    10: "log316",
    11: "iec61966-2-4",
    12: "bt1361e",
    13: "iec61966-2-1",
    14: "bt2020-10",
    15: "bt2020-12",
    16: "smpte2084",
    17: "smpte428",
    18: "arib-std-b67",
}
MATRICES = {
    0: "gbr",
    1: "bt709",
    4: "fcc",
    5: "bt470bg",
    6: "smpte170m",
    7: "smpte240m",
    8: "ycgco",
    9: "bt2020nc",
    10: "bt2020c",
    11: "smpte2085",
    12: "chroma-derived-nc",
    13: "chroma-derived-c",
    14: "ictcp",
}
RANGES = {1: "tv", 2: "pc"}


def code_of(table: dict[int, str], name: str | None) -> int | None:
    """The enum value for an FFmpeg colour name (reverse of the tables above)."""
    for code, known in table.items():
        if known == name:
            return code
    return None


def open_input(path: str | os.PathLike[str]) -> InputContainer:
    """Open a media file for reading; MediaError (one line, naming the file) if we cannot."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MediaError(f"{path}: file not found")
    if os.path.isdir(path):
        raise MediaError(f"{path}: is a folder, not a media file")
    if not os.access(path, os.R_OK):
        raise MediaError(f"{path}: permission denied")
    if os.path.getsize(path) == 0:
        raise MediaError(f"{path}: file is empty")
    try:
        return av.open(path, metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise MediaError(f"{path}: not a readable media file ({_reason(exc)})") from None


def _reason(exc: Exception) -> str:
    """A short reason from a PyAV error, without the file name repeated."""
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(": '")[0].strip()


def count_frames(container: InputContainer, stream: av.VideoStream, path: str) -> int:
    """The number of frames the decoder will output for ``stream``.

    Uses the demuxer's index where it is complete (MP4/MOV), skipping entries marked
    discard by an edit list; otherwise demuxes (no decoding) and counts the packets that
    are neither empty, corrupt nor marked discard. The index is checked against the file
    size, so a truncated file is reported instead of over-counted.
    """
    entries = stream.index_entries
    if stream.frames and len(entries) == stream.frames:
        size = os.path.getsize(path)
        last = max(entries, key=lambda e: e.pos)
        if last.pos + last.size > size:
            raise MediaError(
                f"{path}: file is truncated (video data ends at byte {size}, index expects {last.pos + last.size})"
            )
        return sum(1 for e in entries if not e.is_discard)
    count = 0
    try:
        for packet in container.demux(stream):
            if packet.size and not packet.is_corrupt and not packet.is_discard:
                count += 1
    except av.FFmpegError:
        pass  # a damaged tail: count what could be read
    container.seek(0)
    return count


def _audio_ref(path: str, container: InputContainer, video_start: float) -> AudioRef | None:
    """The first audio stream, windowed to start with the first video frame.

    ``start`` is the first frame's time on the file's timeline (audio and video share it),
    so a clip whose video starts 33 ms after its audio keeps that alignment.
    """
    if not container.streams.audio:
        return None
    a = container.streams.audio[0]
    ctx = a.codec_context
    if not ctx.sample_rate:
        return None
    tb = time_base(a)
    audio_start = float(a.start_time * tb) if a.start_time is not None else 0.0
    duration = None
    if a.duration:
        duration = max(0.0, audio_start + float(a.duration * tb) - video_start)
    return AudioRef(
        path=path,
        stream_index=a.index,
        codec=ctx.name,
        sample_rate=ctx.sample_rate,
        channels=ctx.channels,
        start=video_start,
        duration=duration,
        copyable=True,
    )


def _first_frame(container: InputContainer, stream: av.VideoStream, path: str) -> av.VideoFrame:
    """Decode the first picture (rotation side data, real pix_fmt; proves the codec works)."""
    try:
        for packet in container.demux(stream):
            for frame in packet.decode():
                return frame
        for frame in stream.codec_context.decode(None):
            return frame
    except av.FFmpegError as exc:
        raise MediaError(f"{path}: video stream cannot be decoded ({_reason(exc)})") from None
    raise MediaError(f"{path}: video stream has no decodable frames")


def time_base(stream: Stream) -> Fraction:
    """The time base of a stream being read (the demuxer gives every stream one)."""
    assert stream.time_base is not None, "a demuxed stream always has a time base"
    return stream.time_base


def stream_rate(stream: av.VideoStream, path: str | os.PathLike[str]) -> Fraction:
    """A video stream's frame rate as an exact fraction: the average rate, else FFmpeg's
    guess, else the base rate; a stream with none of them is a MediaError naming ``path``."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate:
        raise MediaError(f"{os.fspath(path)}: video stream has no frame rate")
    return Fraction(rate.numerator, rate.denominator)


def probe(path: str | os.PathLike[str]) -> ClipInfo:
    """Describe the first video stream of ``path`` (and its first audio stream).

    ``fps`` is the exact average rate (a Fraction); ``num_frames`` is what decoding gives;
    ``rotation`` is the display-matrix rotation in degrees counter-clockwise, and
    ``width``/``height`` are the *upright* size (what the reader outputs after applying
    it). Raises MediaError for missing, unreadable, truncated or video-less files.
    ``timecode`` is the source timecode of the first frame, where the file has one.
    A ``%04d`` pattern, a folder or an image file is described as an image sequence at 25 fps.
    """
    path = os.fspath(path)
    if is_image_input(path):
        return ImageSequenceDecoder(path).open()  # an image sequence: its headers' rate, else 25
    container = open_input(path)
    try:
        if not container.streams.video:
            raise MediaError(f"{path}: no video stream")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        if ctx.codec is None or not ctx.is_decoder:
            raise MediaError(f"{path}: unsupported video codec")
        fps = stream_rate(stream, path)
        num_frames = count_frames(container, stream, path)
        if num_frames == 0:
            raise MediaError(f"{path}: video stream has no frames (truncated or corrupt?)")
        first = _first_frame(container, stream, path)
        pix_fmt = first.format.name
        tb = time_base(stream)
        video_start = float(first.pts * tb) if first.pts is not None else 0.0
        rotation = int(first.rotation or 0) % 360
        width, height = first.width, first.height
        if rotation in (90, 270):
            width, height = height, width
        colour = ColourTags(
            primaries=_tag(PRIMARIES, first.color_primaries, ctx.color_primaries),
            transfer=_tag(TRANSFERS, first.color_trc, ctx.color_trc),
            matrix=_tag(MATRICES, first.colorspace, ctx.colorspace) if not is_rgb(pix_fmt) else None,
            range=_tag(RANGES, first.color_range, ctx.color_range) or _implied_range(pix_fmt),
        )
        sar = ctx.sample_aspect_ratio
        channels = 4 if has_alpha(pix_fmt) else 1 if is_grey(pix_fmt) else 3
        return ClipInfo(
            width=width,
            height=height,
            fps=fps,
            num_frames=num_frames,
            channels=channels,
            bit_depth=bit_depth_of(pix_fmt),
            colour=colour,
            time_base=Fraction(tb.numerator, tb.denominator),
            audio=_audio_ref(path, container, video_start),
            source=path,
            pix_fmt=pix_fmt,
            codec=ctx.name,
            rotation=rotation,
            sample_aspect_ratio=Fraction(sar.numerator, sar.denominator) if sar else None,
            timecode=source_timecode(container, stream, fps),
        )
    finally:
        container.close()


def source_timecode(container: InputContainer, stream: av.VideoStream, fps: Fraction) -> Timecode | None:
    """The timecode of the first frame from the container's tags, or None.

    Looks at the video stream's ``timecode`` tag (MOV/MP4 copy the ``tmcd`` track's start
    there), then the data streams' (the ``tmcd`` track itself), then the file's (MXF,
    Matroska). ``;`` (or ``.``/``,``) before the frames marks drop-frame. A tag that is not a
    valid timecode at the stream's rate is ignored.
    """
    tagged = [stream.metadata, *(s.metadata for s in container.streams.data), container.metadata]
    for tags in tagged:
        text = next((v for k, v in tags.items() if k.lower() == "timecode"), None)  # Matroska: TIMECODE
        if text:
            try:
                return Timecode.parse(text, fps)
            except ValueError:
                continue
    return None


def _tag(table: dict[int, str], *codes: int | None) -> str | None:
    """The name in ``table`` of the first colour code that is set (0 reserved/RGB and
    2 "unspecified" do not count); None if none is set or the code has no name."""
    for code in codes:
        if code is not None and code not in (0, 2):
            return table.get(code)
    return None


def _implied_range(pix_fmt: str) -> str | None:
    return "pc" if pix_fmt.startswith("yuvj") else None
