"""The one scheduler: which input frames make output frame n, and how sequence nodes run.

Everything that renders nodes — the engine (``vidfx run``, the Python API), the render
server behind the OFX plugin and the Ray backend's planner — asks this module the same
two questions, so a frame is computed from the same inputs wherever it is rendered:

- ``needed_frames(node, n, lengths)``: the input indices (clamped, edge frames repeat)
  that output frame ``n`` is made from. For a window node that is its declared
  ``frames_needed(n)``; for a sequence node it is every frame of the chunks that cover n.
- ``ChunkRunner``: runs a sequence node over overlapping chunks, keeps the last two
  chunks' results and cross-fades frames inside an overlap, so there is no jump at chunk
  borders and memory is bounded by the chunk length, never by the clip's.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import torch

from .frame import Frame
from .node import Node, SequenceNode


def chunk_count(length: int, chunk_length: int, overlap: int) -> int:
    """How many overlapping chunks cover ``length`` frames (at least one).

    Chunk k covers ``[k*stride, k*stride + chunk_length)`` with ``stride = chunk_length -
    overlap``; a chunk is only made if it adds frames beyond its predecessor's overlap.
    """
    stride = chunk_length - overlap
    if stride <= 0:
        raise ValueError(f"chunk_length ({chunk_length}) must exceed chunk_overlap ({overlap})")
    return 1 + max(0, -(-(length - chunk_length) // stride))


def chunk_starts(length: int, chunk_length: int, overlap: int) -> list[int]:
    """Start indices of the overlapping chunks that cover ``length`` frames (see ``chunk_count``)."""
    stride = chunk_length - overlap
    return [k * stride for k in range(chunk_count(length, chunk_length, overlap))]


@dataclass(frozen=True)
class ChunkPart:
    """One chunk's share of an output frame: frames ``start..stop-1``, blend ``weight``."""

    start: int
    stop: int
    weight: float


def chunk_plan(n: int, length: int, chunk_length: int, overlap: int) -> list[ChunkPart]:
    """The one or two chunks that make frame ``n`` of a ``length``-frame clip.

    Inside an overlap the later chunk's weight ramps up linearly, (j+1)/(overlap+1), and
    the earlier one's down, so the weights sum to 1.
    """
    stride = chunk_length - overlap
    k = min(n // stride, chunk_count(length, chunk_length, overlap) - 1)  # O(1): long clips plan fast
    start = k * stride

    def part(s: int, w: float) -> ChunkPart:
        return ChunkPart(s, min(s + chunk_length, length), w)

    if k == 0 or n >= start - stride + chunk_length:
        return [part(start, 1.0)]
    w = (n - start + 1) / (overlap + 1)
    return [part(start - stride, 1.0 - w), part(start, w)]


def clamp(index: int, length: int) -> int:
    """An input index clamped to ``0..length-1`` (edge frames repeat)."""
    return min(max(index, 0), length - 1)


def needed_frames(node: Node, n: int, lengths: list[int]) -> list[list[int]]:
    """Input frame indices (clamped to ``lengths``) that output frame ``n`` of ``node`` needs.

    A sequence node needs every frame of the chunks that cover ``n`` (chunks follow its first
    input; the same frame numbers of any other input, e.g. a mask clip, come with them).
    """
    if isinstance(node, SequenceNode):
        parts = chunk_plan(n, lengths[0], node.chunk_length, node.chunk_overlap)
        first = sorted({i for p in parts for i in range(p.start, p.stop)})
        return [first] + [sorted({clamp(i, length) for i in first}) for length in lengths[1:]]
    return [[clamp(i, length) for i in idxs] for idxs, length in zip(node.frames_needed(n), lengths, strict=True)]


FetchFn = Callable[[int], "list[Frame] | None"]
ContentKeyFn = Callable[[list[Frame]], Hashable]


class ChunkRunner:
    """Renders a sequence node's output frames chunk by chunk, with blended overlaps.

    ``fetch(i)`` gives frame ``i`` of every input, one per input (or None past the first
    input's real end, which shortens the chunk); the node's ``render_chunk`` gets the
    first input's frames and, for a node with more inputs, one more list per input.
    Without ``content_key`` a chunk is cached by its start index (the engine: input
    frames do not change during a run, and fetching them again would mean decoding
    again); with it, by start, stop and the key of its frames (the render server: a host
    may send other pixels for the same frame numbers).
    """

    def __init__(self, node: SequenceNode, keep: int = 2):
        self.node = node
        self.keep = keep  # the current chunk and the one whose overlap is blended
        self._chunks: OrderedDict[Hashable, tuple[list[list[Frame]], list[torch.Tensor]]] = OrderedDict()

    def render(
        self, n: int, length: int, fetch: FetchFn, content_key: ContentKeyFn | None = None
    ) -> tuple[torch.Tensor, Frame]:
        """Output frame ``n`` of a ``length``-frame input as a (C, H, W) tensor, and the first
        input's frame n (for its index, pts and metadata)."""
        node = self.node
        parts = chunk_plan(n, length, node.chunk_length, node.chunk_overlap)
        outs = []
        frames: list[list[Frame]] = []
        for part in parts:
            frames, results = self._chunk(part, fetch, content_key)
            outs.append((results[n - part.start], part.weight))
        if len(outs) == 1 or outs[0][0] is outs[1][0] or torch.equal(outs[0][0], outs[1][0]):
            data = outs[0][0]  # nothing to blend: bit for bit what both chunks gave (a pass-through)
        else:
            data = outs[0][0] * outs[0][1] + outs[1][0] * outs[1][1]
        return data, frames[0][n - parts[-1].start]

    def _chunk(
        self, part: ChunkPart, fetch: FetchFn, content_key: ContentKeyFn | None
    ) -> tuple[list[list[Frame]], list[torch.Tensor]]:
        key: Hashable = part.start
        if content_key is None and key in self._chunks:
            self._chunks.move_to_end(key)
            return self._chunks[key]
        rows = []
        for i in range(part.start, part.stop):
            row = fetch(i)
            if row is None:
                break
            rows.append(row)
        frames = [list(column) for column in zip(*rows, strict=True)] if rows else [[]]
        if content_key is not None:
            key = (part.start, len(rows), content_key([f for column in frames for f in column]))
            if key in self._chunks:
                self._chunks.move_to_end(key)
                return self._chunks[key]
        results = list(self.node.render_chunk(*frames))
        if len(results) != len(rows):
            raise RuntimeError(f"{self.node.name}: render_chunk returned {len(results)} frames for {len(rows)}")
        self._chunks[key] = (frames, results)
        while len(self._chunks) > self.keep:
            self._chunks.popitem(last=False)
        return frames, results

    def clear(self) -> None:
        """Forget every cached chunk."""
        self._chunks.clear()
