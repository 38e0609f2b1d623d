"""Splitting one output of a graph into time segments that machines render independently.

A segment is a contiguous range of output frames ``[start, stop)``. Its *halo* is, for every
node, the set of frames of that node the segment's output frames draw from, found by walking
the graph backwards with ``vidfx.core.scheduler.needed_frames`` — the same rule the engine
uses. For a sequence node that rule names every frame of the chunks covering n, with chunk
starts laid out over the whole clip, so a segment computes exactly the chunks a single run
would compute for its frames: same inputs, same chunks, same blend weights.

Everything here is pure: a plan is made from the configured lengths of the nodes, never from
pixels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from vidfx.core.node import Node, SequenceNode, SourceNode
from vidfx.core.scheduler import chunk_plan, chunk_starts, needed_frames

DEFAULT_SEGMENT_FRAMES = 500

# (name, node, names of its inputs), in dependency order, as Graph.order() gives them
Order = list[tuple[str, Node, list[str]]]


@dataclass(frozen=True)
class Segment:
    """Output frames ``[start, stop)`` of one output, and what rendering them touches.

    ``halo``: per source node, the range ``[first, last + 1)`` of its frames needed.
    ``computed``: per node, how many frames it processes for this segment (``work_counts``).
    """

    index: int
    start: int
    stop: int
    halo: dict[str, tuple[int, int]] = field(default_factory=dict)
    computed: dict[str, int] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        """Output frames this segment keeps."""
        return self.stop - self.start


@dataclass(frozen=True)
class Plan:
    """The segments of one output, in order; ``whole`` names why it was not split (if so)."""

    output: str
    length: int
    segment_frames: int
    segments: list[Segment]
    whole: str = ""

    def to_json(self) -> dict:
        """A JSON-ready description (the resume manifest stores it)."""
        return asdict(self)

    @staticmethod
    def from_json(doc: dict) -> Plan:
        """The Plan that ``to_json`` described."""
        segments = [
            Segment(
                index=s["index"],
                start=s["start"],
                stop=s["stop"],
                halo={k: (v[0], v[1]) for k, v in s["halo"].items()},
                computed=dict(s["computed"]),
            )
            for s in doc["segments"]
        ]
        return Plan(doc["output"], doc["length"], doc["segment_frames"], segments, doc.get("whole", ""))


def upstream(order: Order, output: str) -> Order:
    """The nodes ``output`` depends on (itself included), in dependency order."""
    inputs_of = {name: inputs for name, _, inputs in order}
    wanted = {output}
    stack = [output]
    while stack:
        for i in inputs_of[stack.pop()]:
            if i not in wanted:
                wanted.add(i)
                stack.append(i)
    return [entry for entry in order if entry[0] in wanted]


def unsplittable(order: Order, output: str) -> str:
    """Why the output cannot be split ("" if it can): the first node upstream of it that is
    not ``splittable``."""
    for name, node, _ in upstream(order, output):
        if not node.splittable:
            return f"node {name!r} ({node.type_name}) cannot be rendered in segments"
    return ""


def frames_needed_by(order: Order, lengths: dict[str, int], output: str, start: int, stop: int) -> dict[str, set[int]]:
    """For output frames ``[start, stop)`` of node ``output``, every node's frames needed.

    Walks the graph backwards from the output with ``needed_frames`` (clamped to the
    inputs' ``lengths``), so the sets are exactly what the engine asks each node for.
    """
    nodes = upstream(order, output)
    needed: dict[str, set[int]] = {name: set() for name, _, _ in nodes}
    needed[output] = set(range(start, min(stop, lengths[output])))
    for name, node, inputs in reversed(nodes):
        if not inputs or not needed[name]:
            continue
        input_lengths = [lengths[i] for i in inputs]
        frames = needed[name]
        lo, hi = min(frames), max(frames)
        if isinstance(node, SequenceNode) and hi - lo + 1 == len(frames):
            # A sequence node's rule is monotone in n and its chunks overlap, so a run of
            # frames needs everything from the first frame's chunks to the last one's; asking
            # only the ends keeps planning a long clip linear (chunk_plan is O(clip length)).
            first, last = needed_frames(node, lo, input_lengths), needed_frames(node, hi, input_lengths)
            for slot, (a, b) in enumerate(zip(first, last, strict=True)):
                needed[inputs[slot]].update(range(min(a), max(b) + 1))
            continue
        for n in frames:
            for slot, idxs in enumerate(needed_frames(node, n, input_lengths)):
                needed[inputs[slot]].update(idxs)
    return needed


def plan_segments(
    order: Order, lengths: dict[str, int], output: str, segment_frames: int = DEFAULT_SEGMENT_FRAMES
) -> Plan:
    """Split the ``lengths[output]`` frames of node ``output`` into segments of
    ``segment_frames`` (the last may be shorter), each with its halo.

    A graph with a node that is not ``splittable`` upstream of the output gets one segment.
    """
    if segment_frames < 1:
        raise ValueError(f"segment_frames must be at least 1, not {segment_frames}")
    length = lengths[output]
    whole = unsplittable(order, output)
    step = length if whole else segment_frames
    sources = {name for name, node, _ in upstream(order, output) if isinstance(node, SourceNode)}
    segments = []
    for index, start in enumerate(range(0, length, max(step, 1))):
        stop = min(start + step, length)
        needed = frames_needed_by(order, lengths, output, start, stop)
        halo = {name: (min(idxs), max(idxs) + 1) for name, idxs in needed.items() if name in sources and idxs}
        computed = work_counts(order, lengths, needed)
        segments.append(Segment(index, start, stop, halo, computed))
    return Plan(output, length, segment_frames, segments, whole)


def work_counts(order: Order, lengths: dict[str, int], needed: dict[str, set[int]]) -> dict[str, int]:
    """Frames each node processes to make its ``needed`` frames: the frames needed, or for a
    sequence node the frames of every chunk those draw on (a chunk is processed whole)."""
    counts = {}
    for name, node, inputs in order:
        if name not in needed:
            continue
        if isinstance(node, SequenceNode) and needed[name]:
            length, chunk = lengths[inputs[0]], node.chunk_length
            frames = needed[name]
            if max(frames) - min(frames) + 1 == len(frames):  # a run: the chunks from its first to its last
                first = chunk_plan(min(frames), length, chunk, node.chunk_overlap)[0].start
                last = chunk_plan(max(frames), length, chunk, node.chunk_overlap)[-1].start
                starts = {s for s in chunk_starts(length, chunk, node.chunk_overlap) if first <= s <= last}
            else:
                starts = {part.start for n in frames for part in chunk_plan(n, length, chunk, node.chunk_overlap)}
            counts[name] = sum(min(s + chunk, length) - s for s in starts)
        else:
            counts[name] = len(needed[name])
    return counts


def single_run_counts(order: Order, lengths: dict[str, int], output: str) -> dict[str, int]:
    """Frames each node processes in one run over the whole output (see ``work_counts``)."""
    return work_counts(order, lengths, frames_needed_by(order, lengths, output, 0, lengths[output]))


def halo_overhead(plan: Plan, single: dict[str, int]) -> dict[str, float]:
    """Per node, the frames made over all segments beyond those a single run makes
    (``single``, from ``single_run_counts``), as a fraction of the latter: 0.0 means the
    node computes nothing twice."""
    totals: dict[str, int] = {}
    for seg in plan.segments:
        for name, count in seg.computed.items():
            totals[name] = totals.get(name, 0) + count
    return {name: totals.get(name, 0) / count - 1.0 for name, count in single.items() if count}
