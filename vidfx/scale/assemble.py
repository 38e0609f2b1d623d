"""Joining finished segments into the requested output.

How segments are written decides how they are joined (``segment_format``):

- intra-frame codecs (ProRes, DNxHR, FFV1): every segment is written with the output's own
  codec and options, and assembly copies the packets into one file (no re-encode), giving
  each packet the source timestamp its frame had (from the segment's record), so timing is
  exactly that of a single run;
- long-GOP codecs (H.264/H.265): segments are lossless FFV1 (16 bits per component) and the
  driver decodes and encodes them once with vidfx's writer. Joining closed-GOP streams by
  stream copy would need every segment to start with an IDR frame, matching encoder state
  (SPS/PPS, HRD buffer, B-frame reordering delay) and edit lists per container; one encode
  on the driver is the simplest way that is always correct;
- image sequences: each segment writes its images with their final numbers into its own
  folder, and assembly moves them into place.

Audio is taken from the source once, by the writer's own audio path
(``vidfx.io.audio.AudioMuxer``); colour tags, bit depth and timecode are those of a single
run. The output is written under a hidden temporary name and renamed at the end, holding
the output's lock (``vidfx.io.output_lock``) meanwhile.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av

from vidfx.core.errors import MediaError
from vidfx.core.frame import ClipInfo, Frame
from vidfx.core.sink import file_sinks
from vidfx.io.audio import AudioMuxer
from vidfx.io.nodes import open_source
from vidfx.io.output_lock import OutputLock, remove_path, remove_stale_temporaries, temporary_name
from vidfx.io.sequence_writer import ImageSequenceWriter, frame_path, output_timecode
from vidfx.io.writer import make_sink, plan_video, writer_options

from .plan import Segment

INTRA_CODECS = ("prores_422hq", "prores_4444", "dnxhr_hqx", "ffv1")
# lossless intermediate for outputs that are re-encoded on the driver
INTERMEDIATE = {"codec": "ffv1", "bit_depth": "16", "audio": "none"}


@dataclass(frozen=True)
class SegmentFormat:
    """How segments are written and joined: ``mode`` is ``copy`` (intra codec, packets
    copied), ``encode`` (FFV1 segments, encoded once) or ``images``."""

    mode: str
    path: str  # the final output
    options: dict[str, Any]  # the final output's writer options
    ext: str = ""  # the segment files' extension (copy/encode)
    pattern: str = ""  # the final image pattern (images)
    first_number: int = 0  # number of the first image (images)

    def segment_path(self, stem: str) -> str:
        """Where the segment with path stem ``stem`` goes (a file, or a pattern in a folder)."""
        if self.mode == "images":
            os.makedirs(stem, exist_ok=True)
            return os.path.join(stem, os.path.basename(self.pattern))
        return stem + self.ext

    def segment_options(self, segment: Segment, info: ClipInfo) -> dict[str, Any]:
        """Writer options of one segment."""
        if self.mode == "encode":
            return dict(INTERMEDIATE)
        if self.mode == "images":
            return {**self.options, "start_number": self.first_number + segment.start}
        return {**self.options, "audio": "none"}


def segment_format(path: str, options: dict[str, Any], info: ClipInfo) -> SegmentFormat:
    """How the segments of output ``path`` (writer ``options``, clip ``info``) are written.
    Checks the output as ``vidfx run`` would (MediaError/ParamError), writing nothing."""
    file_sinks().check(path, info, **options)
    sink = make_sink(path, **options)
    if isinstance(sink, ImageSequenceWriter):
        start = options.get("start_number")
        first = start if start is not None else (info.first_number or 0)
        return SegmentFormat("images", path, dict(options), pattern=sink.pattern, first_number=first)
    plan = plan_video(path, writer_options(options, owner=f"output {path}"), info)
    assert plan is not None  # given info, plan_video plans
    if plan.codec in INTRA_CODECS:
        return SegmentFormat("copy", path, dict(options), ext=os.path.splitext(path)[1].lower())
    return SegmentFormat("encode", path, dict(options), ext=".mkv")


def assemble(fmt: SegmentFormat, records: list[dict[str, Any]], info: ClipInfo, work_dir: str) -> int:
    """Join the segments ``records`` (in order) into ``fmt.path``; returns frames written.

    ``info`` is the output's description from planning (size, rate, colour, audio,
    timecode). Nothing is left at the output path if this fails.
    """
    if fmt.mode == "images":
        return _move_images(fmt, records, work_dir)
    if fmt.mode == "encode":
        return _encode(fmt, records, info, work_dir)
    return _remux(fmt, records, info, work_dir)


def _first_pts(records: list[dict[str, Any]]) -> int:
    first = records[0]["pts"][0] if records and records[0]["pts"] else 0
    return first or 0


def _encode(fmt: SegmentFormat, records: list[dict[str, Any]], info: ClipInfo, work_dir: str) -> int:
    """Decode the FFV1 segments and encode them once with vidfx's writer (audio included)."""
    sink = file_sinks()(fmt.path, **fmt.options)
    sink.open(info)
    written = 0
    try:
        for record in records:
            source = open_source(os.path.join(work_dir, record["media"]), audio=False)
            try:
                for j, (pts, duration) in enumerate(zip(record["pts"], record["durations"], strict=True)):
                    frame = source.read(j)
                    sink.write(Frame(frame.data, index=written, pts=pts, meta={"duration": duration}))
                    written += 1
            finally:
                source.close()
    except BaseException:
        sink.abort()
        raise
    sink.close()
    return written


def _remux(fmt: SegmentFormat, records: list[dict[str, Any]], info: ClipInfo, work_dir: str) -> int:
    """Copy the intra-coded segments' packets into one file with the source timestamps."""
    path = fmt.path
    ext = os.path.splitext(path)[1].lower()
    opts = writer_options(fmt.options, owner=f"output {path}")
    time_base = info.time_base or 1 / info.fps
    first = _first_pts(records)
    lock = OutputLock(path)
    lock.acquire()
    temp = ""
    output = None
    audio = None
    written = 0
    try:
        remove_stale_temporaries(path)
        temp = temporary_name(path, ext)
        output = av.open(temp, "w", format=_MUXERS[ext])
        template = av.open(os.path.join(work_dir, records[0]["media"]))
        try:
            source = template.streams.video[0]
            stream = output.add_stream_from_template(source, rate=info.fps)
            if source.codec_tag:  # not copied by the template; MOV would guess ProRes 422 HQ's tag
                stream.codec_context.codec_tag = source.codec_tag
        finally:
            template.close()
        stream.time_base = time_base
        timecode = output_timecode(info, path)
        if timecode is not None:
            stream.metadata["timecode"] = str(timecode)
        if info.audio is not None and opts.audio != "none":
            audio = AudioMuxer(info.audio, output, opts.audio, opts.audio_bitrate)
        end = 0
        for record in records:
            with av.open(os.path.join(work_dir, record["media"])) as segment:
                source = segment.streams.video[0]
                packets = [p for p in segment.demux(source) if p.size]
                if len(packets) != len(record["pts"]):
                    raise MediaError(
                        f"{record['media']}: {len(packets)} packets for {len(record['pts'])} frames (damaged segment?)"
                    )
                for packet, pts, duration in zip(packets, record["pts"], record["durations"], strict=True):
                    own = (pts if pts is not None else first + _ticks(written, info, time_base)) - first
                    length = duration or _packet_duration(packet, time_base) or _ticks(1, info, time_base)
                    packet.stream = stream
                    packet.time_base = time_base
                    packet.pts = packet.dts = own
                    packet.duration = length
                    output.mux(packet)
                    written += 1
                    end = max(end, own + length)
                    if audio is not None:
                        audio.feed_until(float(own * time_base))
        if audio is not None:
            audio.finish(float(end * time_base))
            audio = None
        output.close()
        output = None
        if os.path.getsize(temp) == 0:
            raise MediaError(f"{path}: output could not be written (empty file)")
        os.replace(temp, path)
        temp = ""
    except av.FFmpegError as exc:
        raise MediaError(f"{path}: joining segments failed ({exc})") from None
    finally:
        if audio is not None:
            audio.close()
        if output is not None:
            try:
                output.close()
            except Exception:  # already failing; the file is removed below
                pass
        if temp:
            remove_path(temp)
        lock.release()
    return written


def _ticks(frames: int, info: ClipInfo, time_base: Fraction) -> int:
    return round(Fraction(frames) / info.fps / time_base)


def _packet_duration(packet: av.Packet, time_base: Fraction) -> int:
    if not packet.duration or packet.time_base is None:
        return 0
    return round(packet.duration * packet.time_base / time_base)


def _move_images(fmt: SegmentFormat, records: list[dict[str, Any]], work_dir: str) -> int:
    """Move each segment's images (already numbered as in the output) into place."""
    lock = OutputLock(fmt.pattern)
    lock.acquire()
    moved = 0
    try:
        for record in records:
            seg_pattern = os.path.join(work_dir, record["media"], os.path.basename(fmt.pattern))
            for k in range(record["start"], record["stop"]):
                number = fmt.first_number + k
                os.replace(frame_path(seg_pattern, number), frame_path(fmt.pattern, number))
                moved += 1
    except OSError as exc:
        raise MediaError(f"{fmt.pattern}: cannot move images into place ({exc.strerror or exc})") from None
    finally:
        lock.release()
    return moved


_MUXERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".mxf": "mxf", ".avi": "avi"}
