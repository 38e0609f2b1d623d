"""The pull-based scheduler.

Each output is pulled frame by frame, in order. A node asked for frame n asks its inputs
for the frames its ``frames_needed(n)`` names, renders, and keeps the result in a small
cache. After each render a node tells its inputs the lowest index it will still ask for,
and they drop everything older, so memory is bounded by the declared windows and never
by the length of the video.

Which input frames a node needs, and how sequence nodes (recurrent or bidirectional
models) run in overlapping, cross-faded chunks, comes from ``vidfx.core.scheduler``: the
render server and the Ray backend use the same rules, so a frame is made from the same
inputs wherever it is rendered.
"""

from __future__ import annotations

import logging
import os
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .errors import ParamError
from .frame import ClipInfo, EndOfStream, Frame
from .node import Node, SequenceNode, SourceNode
from .scheduler import ChunkRunner, chunk_plan, needed_frames
from .sink import Sink

log = logging.getLogger("vidfx")

MIN_CACHE = 4


_DEVICE = re.compile(r"^(cpu|auto|cuda(:\d+)?)$")


def resolve_device(device: str | torch.device) -> torch.device:
    """``cpu``, ``cuda`` (``cuda:1``...) or ``auto`` (CUDA when available) as a torch.device.

    Anything else, or CUDA on a machine without it, is a ParamError.
    """
    if isinstance(device, torch.device):
        return device
    if not isinstance(device, str) or not _DEVICE.match(device):
        raise ParamError(f"device {device!r}: expected cpu, cuda, cuda:N or auto")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ParamError(f"device {device}: no CUDA GPU is available")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ParamError(f"device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return torch.device(device)


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux: MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


# A node holds a few frames of its output at once (its cache, the frame being made, copies
# inside render); a frame larger than this share of free memory cannot be rendered safely.
FRAME_MEMORY_SHARE = 0.25


def check_frame_memory(name: str, info: ClipInfo, available: int | None) -> None:
    """ParamError if one float32 frame of ``info`` would take more than a quarter of memory."""
    need = info.width * info.height * max(info.channels, 1) * 4
    if available is not None and need > available * FRAME_MEMORY_SHARE:
        raise ParamError(
            f"{name}: one {info.width}x{info.height}x{info.channels} frame needs {need / 2**30:.1f} GiB "
            f"as float32, more than this machine can hold safely ({available / 2**30:.1f} GiB free)"
        )


_lengths_changed = 0  # how often a source has found its real length (derived lengths are stale then)


def _source_length_changed() -> None:
    global _lengths_changed
    _lengths_changed += 1


class NodeRun:
    """One node during a run: its inputs, its output description and its frame cache."""

    def __init__(self, node: Node, inputs: list[NodeRun], device: torch.device):
        self.node = node
        self.inputs = inputs
        self.device = device
        node.device = device
        self.info: ClipInfo = node.configure([i.info for i in inputs], device)
        self._length = self.info.num_frames if isinstance(node, SourceNode) else None
        self._derived_length = (-1, 0)  # (the _lengths_changed count it was computed at, length)
        self.cache: OrderedDict[int, Frame] = OrderedDict()
        self.cache_size = MIN_CACHE
        self.low_water: dict[tuple[int, int], int] = {}  # (id(consumer), input slot) -> index
        self.chunk_runner = ChunkRunner(node) if isinstance(node, SequenceNode) else None
        for slot, inp in enumerate(inputs):
            inp.low_water[(id(self), slot)] = 0

    @property
    def length(self) -> int:
        """Number of output frames, as known now (a reader may correct its count at the end)."""
        if self._length is not None:
            return self._length
        if self._derived_length[0] != _lengths_changed:  # asking the whole chain each time costs O(depth)
            self._derived_length = (_lengths_changed, self.node.output_length([i.length for i in self.inputs]))
        return self._derived_length[1]

    # --- pulling ---------------------------------------------------------------------
    def get(self, n: int) -> Frame:
        """Output frame ``n`` (computed, or from the cache)."""
        frame = self.cache.get(n)
        if frame is not None:
            self.cache.move_to_end(n)
            return frame
        if isinstance(self.node, SourceNode):
            try:
                frame = self.node.read(n)
            except EndOfStream as end:
                if end.length <= 0:
                    raise
                log.debug("%s: %d frames, not %d", self.node.name, end.length, self._length)
                self._length = end.length
                _source_length_changed()
                raise
        elif isinstance(self.node, SequenceNode):
            frame = self._render_sequence(n)
        else:
            frame = self._render(n)
        self.cache[n] = frame
        self._evict()
        return frame

    def _fetch(self, slot: int, i: int) -> Frame:
        """Input frame ``i`` of input ``slot``, clamped to the input's range."""
        inp = self.inputs[slot]
        while True:
            length = inp.length
            if length <= 0:
                raise EndOfStream(0)
            try:
                return inp.get(min(max(i, 0), length - 1))
            except EndOfStream:
                if inp.length >= length:  # the input did not get shorter: a real end
                    raise

    def _render(self, n: int) -> Frame:
        lengths = [i.length for i in self.inputs]
        needed = needed_frames(self.node, n, lengths)
        self._note_span(needed)
        frames = [[self._fetch(slot, i) for i in idxs] for slot, idxs in enumerate(needed)]
        out = self.node.render(n, frames)
        if n + 1 < self.length:
            ahead = needed_frames(self.node, n + 1, lengths)
            for slot, idxs in enumerate(ahead):
                self.inputs[slot].release_below(id(self), slot, min(idxs, default=0))
        return out

    def _render_sequence(self, n: int) -> Frame:
        node = self.node
        assert isinstance(node, SequenceNode) and self.chunk_runner is not None
        source = self.inputs[0]
        self._note_span([[0, node.chunk_length - 1]] * len(self.inputs))

        def fetch(i: int) -> list[Frame] | None:
            if i >= source.length:
                return None
            frame = self._fetch(0, i)
            if i >= source.length:  # the reader found its end while fetching
                return None
            return [frame] + [self._fetch(slot, i) for slot in range(1, len(self.inputs))]

        length = source.length
        data, frame = self.chunk_runner.render(n, length, fetch)
        # the chunks hold their frames: the input's frames before the next chunk are not needed again
        newest = chunk_plan(n, length, node.chunk_length, node.chunk_overlap)[-1].start
        for slot, inp in enumerate(self.inputs):
            inp.release_below(id(self), slot, newest + node.chunk_length - node.chunk_overlap)
        return frame.with_data(data, index=n)

    # --- memory ------------------------------------------------------------------------
    def _note_span(self, needed: list[list[int]]) -> None:
        """Grow the input caches to hold the widest window seen (plus slack)."""
        for slot, idxs in enumerate(needed):
            if idxs:
                span = max(idxs) - min(idxs) + 1
                inp = self.inputs[slot]
                inp.cache_size = max(inp.cache_size, span + 2)

    def release_below(self, consumer: int, slot: int, index: int) -> None:
        """A consumer will not ask for frames below ``index`` any more."""
        self.low_water[(consumer, slot)] = max(self.low_water.get((consumer, slot), 0), index)
        self._evict()

    def _evict(self) -> None:
        floor = min(self.low_water.values()) if self.low_water else None
        if floor is not None:
            for i in [i for i in self.cache if i < floor]:
                del self.cache[i]
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)


@dataclass
class RunSummary:
    """What a run did: frames written per output, time taken, messages from nodes."""

    frames: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    messages: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        """Output frames per second (over all outputs' frames)."""
        total = max(self.frames.values(), default=0)
        return total / self.seconds if self.seconds > 0 else 0.0


ProgressFn = Callable[[int, int], None]


def build_runs(order: list[tuple[str, Node, list[str]]], device: torch.device) -> dict[str, NodeRun]:
    """Configure every node in topological order; returns the runtime of each by name.

    Each node's frame size is checked against the memory free before the run (ParamError
    before any pixel is allocated).
    """
    runs: dict[str, NodeRun] = {}
    available = available_memory()
    try:
        for name, node, inputs in order:
            runs[name] = NodeRun(node, [runs[i] for i in inputs], device)
            check_frame_memory(node.name, runs[name].info, available)
    except BaseException:
        for _, node, _ in order:  # a node that failed to configure may hold half its resources
            node.close()
        raise
    return runs


def pull(outputs: list[tuple[str, NodeRun, Sink]], progress: ProgressFn | None = None) -> dict[str, int]:
    """Pull every output to its sink in lock-step, frame by frame. Returns frames written.

    On any error every sink is aborted (no finished-looking partial files) and the error
    propagates; on success every sink is closed.
    """
    written = {label: 0 for label, _, _ in outputs}
    opened = []
    try:
        for _, run, sink in outputs:
            sink.open(run.info)
            opened.append(sink)
        active = list(outputs)
        n = 0
        while active:
            still = []
            for label, run, sink in active:
                if n >= run.length:
                    continue
                try:
                    frame = run.get(n)
                except EndOfStream:
                    if n < run.length:
                        raise
                    continue
                if n >= run.length:
                    continue
                sink.write(frame)
                written[label] += 1
                run.release_below(id(sink), 0, n + 1)
                still.append((label, run, sink))
            active = still
            n += 1
            if progress is not None and active:
                progress(n, max(r.length for _, r, _ in active))
    except BaseException:
        for sink in opened:
            try:
                sink.abort()
            except Exception:  # pragma: no cover - best effort cleanup
                log.exception("abort failed")
        raise
    for sink in opened:
        sink.close()
    return written
