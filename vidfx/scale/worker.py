"""Rendering one segment: a fresh copy of the graph, the shared engine, one intermediate file.

A worker builds its own nodes from the Job (the ``read`` nodes open the inputs themselves),
configures them with ``vidfx.core.engine.build_runs`` and asks the output node for frames
``start..stop-1`` exactly as ``engine.pull`` asks for frames 0, 1, 2, ...: every node
fetches the frames ``scheduler.needed_frames`` names, and sequence nodes run whole chunks
laid out over the entire clip, so each frame is bit-identical to a single run's.

The segment goes to the work dir through vidfx's own writer (which writes a hidden
temporary file and renames it when complete); a JSON record of the frames' timestamps is
then written next to it, also under a temporary name. A segment counts as done only when
both exist, so a worker killed at any moment leaves nothing that looks done.

``SegmentWorker`` is the Ray actor: one per worker process, which keeps the process (and
the models ``vidfx.ops.weights.load_model`` caches in it) for every segment it renders.
"""

from __future__ import annotations

import json
import os
from typing import Any

from vidfx.core.engine import NodeRun, build_runs, resolve_device
from vidfx.core.errors import MediaError
from vidfx.core.frame import ClipInfo, EndOfStream
from vidfx.core.sink import Sink, file_sinks

from .assemble import SegmentFormat
from .job import Job
from .plan import Segment


def segment_stem(work_dir: str, index: int) -> str:
    """Path of segment ``index``'s files, without extension."""
    return os.path.join(work_dir, f"segment_{index:05d}")


def record_path(work_dir: str, index: int) -> str:
    """Path of the JSON record that marks segment ``index`` as complete."""
    return segment_stem(work_dir, index) + ".json"


def read_record(work_dir: str, index: int) -> dict[str, Any] | None:
    """The record of a complete segment (its media still in place), else None."""
    try:
        with open(record_path(work_dir, index)) as fh:
            record = json.load(fh)
    except (OSError, ValueError):
        return None
    media = record.get("media")
    if not isinstance(media, str) or not os.path.exists(os.path.join(work_dir, media)):
        return None
    return record


def write_json(path: str, doc: Any) -> None:
    """Write JSON under a temporary name and rename it into place (never half a file)."""
    temp = f"{path}.tmp-{os.getpid()}"
    with open(temp, "w") as fh:
        json.dump(doc, fh)
    os.replace(temp, path)


def render_segment(
    job: Job, segment: Segment, lengths: dict[str, int], work_dir: str, fmt: SegmentFormat
) -> dict[str, Any]:
    """Render output frames ``[segment.start, segment.stop)`` of ``job`` into the work dir.

    ``lengths``: every node's frame count at planning time; a node that now has another
    length (an input changed, or a reader found fewer frames than its container said)
    makes the plan invalid and raises MediaError. Returns the segment's record: media file
    name, and each frame's source pts and duration (in the output's time base). A segment
    already complete in the work dir is not rendered again.
    """
    done = read_record(work_dir, segment.index)
    if done is not None:
        return done
    order = job.build()
    runs = build_runs(order, resolve_device(job.device))
    try:
        _check_lengths(runs, lengths)
        run = runs[job.output]
        media = fmt.segment_path(segment_stem(work_dir, segment.index))
        sink = file_sinks()(media, **fmt.segment_options(segment, run.info))
        sink.open(segment_info(run.info, segment))
        try:
            pts, durations = render_range(run, segment.start, segment.stop, sink)
            _check_lengths(runs, lengths)
            if len(pts) != segment.frames:
                raise MediaError(f"segment {segment.index}: made {len(pts)} frames, the plan has {segment.frames}")
        except BaseException:
            sink.abort()
            raise
        sink.close()
    finally:
        for _, node, _ in order:
            node.close()
    messages = [m for _, node, _ in order for m in node.messages]
    record = {
        "index": segment.index,
        "start": segment.start,
        "stop": segment.stop,
        # an image segment is its folder (the pattern itself names no file)
        "media": os.path.relpath(os.path.dirname(media) if fmt.mode == "images" else media, work_dir),
        "pts": pts,
        "durations": durations,
        "pid": os.getpid(),
        "messages": messages,
    }
    write_json(record_path(work_dir, segment.index), record)
    return record


def render_range(run: NodeRun, start: int, stop: int, sink: Sink) -> tuple[list[int | None], list[int | None]]:
    """Write output frames ``start..stop-1`` of ``run`` to the open ``sink``, pulled as
    ``engine.pull`` pulls (each frame released once written). Stops early at the end of
    the stream. Returns each written frame's pts and ``meta["duration"]``."""
    pts: list[int | None] = []
    durations: list[int | None] = []
    for n in range(start, stop):
        try:
            frame = run.get(n)
        except EndOfStream:
            break
        sink.write(frame)
        pts.append(frame.pts)
        durations.append(frame.meta.get("duration"))
        run.release_below(id(sink), 0, n + 1)
    return pts, durations


def segment_info(info: ClipInfo, segment: Segment) -> ClipInfo:
    """The output's description as seen from the segment's first frame (timecode and image
    numbers move with it, as after a trim)."""
    return info.replace(
        timecode=None if info.timecode is None else info.timecode + segment.start,
        first_number=None if info.first_number is None else info.first_number + segment.start,
    )


def _check_lengths(runs: dict[str, NodeRun], lengths: dict[str, int]) -> None:
    for name, planned in lengths.items():
        now = runs[name].length if name in runs else planned
        if now != planned:
            raise MediaError(
                f"node {name!r} has {now} frames, the segment plan assumed {planned} "
                "(an input changed, or its container's frame count is wrong: render it without --backend ray)"
            )


class SegmentWorker:
    """A long-lived worker process (made a Ray actor by the backend): renders segments one
    at a time; models stay loaded in the process between segments."""

    def render(
        self, job: Job, segment: Segment, lengths: dict[str, int], work_dir: str, fmt: SegmentFormat
    ) -> dict[str, Any]:
        """``render_segment`` in this process."""
        return render_segment(job, segment, lengths, work_dir, fmt)

    def pid(self) -> int:
        """This worker's process id."""
        return os.getpid()
