"""The pull-based scheduler.

Each output is pulled frame by frame, in order. A node asked for frame n asks its inputs
for the frames its ``frames_needed(n)`` names, renders, and keeps the result in a small
cache. After each render a node tells its inputs the lowest index it will still ask for,
and they drop everything older, so memory is bounded by the declared windows and never
by the length of the video.

Sequence nodes (recurrent or bidirectional models) are rendered in overlapping chunks;
frames inside an overlap are a cross-fade of the two chunks' results, so there is no jump
at chunk borders.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

import torch

from .frame import ClipInfo, EndOfStream, Frame
from .node import Node, SequenceNode, SourceNode
from .sink import Sink

log = logging.getLogger("vidfx")

MIN_CACHE = 4


def resolve_device(device: str | torch.device) -> torch.device:
    """``cpu``, ``cuda`` (``cuda:1``...) or ``auto`` (CUDA when available) as a torch.device."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        from .errors import VidfxError

        raise VidfxError("--device cuda was asked for, but no CUDA GPU is available")
    return torch.device(device)


def chunk_starts(length: int, chunk_length: int, overlap: int) -> list[int]:
    """Start indices of the overlapping chunks that cover ``length`` frames.

    Chunk k covers ``[k*stride, k*stride + chunk_length)`` with ``stride = chunk_length -
    overlap``; a chunk is only made if it adds frames beyond its predecessor's overlap.
    """
    stride = chunk_length - overlap
    if stride <= 0:
        raise ValueError(f"chunk_length ({chunk_length}) must exceed chunk_overlap ({overlap})")
    starts = [0]
    while starts[-1] + chunk_length < length:
        starts.append(starts[-1] + stride)
    return starts


def chunk_weights(n: int, length: int, chunk_length: int, overlap: int) -> list[tuple[int, float]]:
    """The chunks (by start index) that contribute to frame ``n`` and their blend weights.

    Inside an overlap the later chunk's weight ramps up linearly, (j+1)/(overlap+1).
    """
    stride = chunk_length - overlap
    starts = chunk_starts(length, chunk_length, overlap)
    k = min(n // stride, len(starts) - 1)
    start = starts[k]
    prev_covers = k > 0 and n < starts[k - 1] + chunk_length
    if not prev_covers:
        return [(start, 1.0)]
    w = (n - start + 1) / (overlap + 1)
    return [(starts[k - 1], 1.0 - w), (start, w)]


class NodeRun:
    """One node during a run: its inputs, its output description and its frame cache."""

    def __init__(self, node: Node, inputs: list["NodeRun"], device: torch.device):
        self.node = node
        self.inputs = inputs
        self.device = device
        node.device = device
        self.info: ClipInfo = node.configure([i.info for i in inputs], device)
        self._length = self.info.num_frames if isinstance(node, SourceNode) else None
        self.cache: OrderedDict[int, Frame] = OrderedDict()
        self.cache_size = MIN_CACHE
        self.low_water: dict[tuple[int, int], int] = {}  # (id(consumer), input slot) -> index
        self.chunks: OrderedDict[int, list[torch.Tensor]] = OrderedDict()
        self.chunk_frames: dict[int, list[Frame]] = {}
        for slot, inp in enumerate(inputs):
            inp.low_water[(id(self), slot)] = 0

    @property
    def length(self) -> int:
        """Number of output frames, as known now (a reader may correct its count at the end)."""
        if self._length is not None:
            return self._length
        return self.node.output_length([i.length for i in self.inputs])

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
        needed = self.node.frames_needed(n)
        self._note_span(needed)
        frames = [[self._fetch(slot, i) for i in idxs] for slot, idxs in enumerate(needed)]
        out = self.node.render(n, frames)
        if n + 1 < self.length:
            ahead = self.node.frames_needed(n + 1)
            for slot, idxs in enumerate(ahead):
                self.inputs[slot].release_below(id(self), slot, min(idxs, default=0))
        return out

    def _render_sequence(self, n: int) -> Frame:
        node = self.node
        assert isinstance(node, SequenceNode)
        parts = chunk_weights(n, self.length, node.chunk_length, node.chunk_overlap)
        outs = []
        for start, weight in parts:
            result = self._chunk(start)
            outs.append((result[n - start], weight))
        data = outs[0][0] if len(outs) == 1 else outs[0][0] * outs[0][1] + outs[1][0] * outs[1][1]
        source = self.chunk_frames[parts[-1][0]][n - parts[-1][0]]
        return source.with_data(data, index=n)

    def _chunk(self, start: int) -> list[torch.Tensor]:
        if start in self.chunks:
            return self.chunks[start]
        node = self.node
        self._note_span([[start, start + node.chunk_length - 1]])
        frames = []
        for i in range(start, start + node.chunk_length):
            if i >= self.inputs[0].length:
                break
            frame = self._fetch(0, i)
            if i >= self.inputs[0].length:  # the reader found its end while fetching
                break
            frames.append(frame)
        result = node.render_chunk(frames)
        if len(result) != len(frames):
            raise RuntimeError(f"{node.name}: render_chunk returned {len(result)} frames for {len(frames)}")
        self.chunks[start] = result
        self.chunk_frames[start] = frames
        while len(self.chunks) > 2:  # the current chunk and the one whose overlap we blend
            old, _ = self.chunks.popitem(last=False)
            self.chunk_frames.pop(old, None)
        stride = node.chunk_length - node.chunk_overlap
        self.inputs[0].release_below(id(self), 0, start + stride)
        return result

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
    """Configure every node in topological order; returns the runtime of each by name."""
    runs: dict[str, NodeRun] = {}
    for name, node, inputs in order:
        runs[name] = NodeRun(node, [runs[i] for i in inputs], device)
    return runs


def pull(outputs: list[tuple[str, NodeRun, Sink]], progress: ProgressFn | None = None) -> dict[str, int]:
    """Pull every output to its sink in lock-step, frame by frame. Returns frames written.

    On any error every sink is aborted (no finished-looking partial files) and the error
    propagates; on success every sink is closed.
    """
    written = {label: 0 for label, _, _ in outputs}
    opened = []
    try:
        for label, run, sink in outputs:
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
