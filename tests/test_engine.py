"""The scheduler: windows, bounded caches, sequence chunks, lengths found at decode time."""

from fractions import Fraction

import numpy as np
import pytest
import torch

import vidfx
from vidfx.core.engine import build_runs, pull, resolve_device
from vidfx.core.frame import ClipInfo, EndOfStream, Frame
from vidfx.core.graph import Graph
from vidfx.core.node import SequenceNode, SourceNode
from vidfx.core.scheduler import chunk_plan, chunk_starts, needed_frames
from vidfx.core.sink import Sink


def ramp(n, shape=(1, 4, 6)):
    return [torch.full(shape, float(i)) for i in range(n)]


class CountingSource(SourceNode):
    """Frames whose value is their index; counts reads; may end before it claims to."""

    type_name = "counting"

    def __init__(self, claimed, real=None, name="src"):
        super().__init__(name=name)
        self.claimed, self.real = claimed, real if real is not None else claimed
        self.reads = []

    def configure(self, inputs, device):
        return ClipInfo(
            width=3, height=2, fps=Fraction(25), num_frames=self.claimed, channels=1, time_base=Fraction(1, 25)
        )

    def read(self, n):
        if n >= self.real:
            raise EndOfStream(self.real)
        self.reads.append(n)
        return Frame(torch.full((1, 2, 3), float(n)), index=n, pts=n)


class CountingSink(Sink):
    def __init__(self):
        self.values, self.opened, self.closed, self.aborted = [], False, False, False

    def open(self, info):
        self.opened = True

    def write(self, frame):
        self.values.append(float(frame.data.mean()))

    def close(self):
        self.closed = True

    def abort(self):
        self.aborted = True


def run_graph(graph):
    runs = build_runs(graph.order(), torch.device("cpu"))
    sink = CountingSink()
    out = graph.outputs[0].input
    written = pull([("out", runs[out], sink)])
    return runs, sink, written


def test_temporal_average_values_and_edges():
    out = vidfx.apply("temporal_average", ramp(6), radius=1)
    assert [round(float(o.mean()), 4) for o in out] == [round(1 / 3, 4), 1, 2, 3, 4, round(14 / 3, 4)]


def test_apply_streams_to_a_given_sink():
    class Means(Sink):
        def __init__(self):
            self.means, self.closed = [], False

        def write(self, frame):
            self.means.append(round(float(frame.data.mean()), 4))

        def close(self):
            self.closed = True

    sink = Means()
    assert vidfx.apply("temporal_average", ramp(6), radius=1, sink=sink) == []
    assert sink.means == [round(1 / 3, 4), 1, 2, 3, 4, round(14 / 3, 4)] and sink.closed


def test_each_source_frame_decoded_once_and_cache_bounded():
    g = Graph()
    src = CountingSource(300)
    g.add(src)
    g.add("temporal_average", "src", name="avg", radius=3)
    g.write("avg", sink=CountingSink())
    runs = build_runs(g.order(), torch.device("cpu"))
    peak = 0

    class Watch(CountingSink):
        def write(self, frame):
            nonlocal peak
            peak = max(peak, len(runs["src"].cache))
            super().write(frame)

    sink = Watch()
    pull([("out", runs["avg"], sink)])
    assert len(sink.values) == 300
    assert src.reads == list(range(300))  # sequential, nothing decoded twice
    assert peak <= 2 * 3 + 1 + 2  # the window plus slack, not the video length


def test_reader_that_ends_early_corrects_length():
    g = Graph()
    g.add(CountingSource(claimed=20, real=15))
    g.add("temporal_average", "src", name="avg", radius=2)
    g.write("avg", sink=CountingSink())
    _, sink, written = run_graph(g)
    assert written == {"out": 15}
    # the last frame averages 12, 13, 14, 14, 14 (edge frames repeat)
    assert sink.values[-1] == pytest.approx((12 + 13 + 14 * 3) / 5)


def test_failure_aborts_sinks():
    class Broken(SourceNode):
        type_name = "broken"

        def configure(self, inputs, device):
            return ClipInfo(width=2, height=2, fps=Fraction(25), num_frames=10)

        def read(self, n):
            if n == 4:
                raise RuntimeError("decoder exploded")
            return Frame(torch.zeros(3, 2, 2), index=n, pts=n)

    g = Graph()
    g.add(Broken(name="b"))
    sink = CountingSink()
    g.write("b", sink=sink)
    runs = build_runs(g.order(), torch.device("cpu"))
    with pytest.raises(RuntimeError):
        pull([("out", runs["b"], sink)])
    assert sink.aborted and not sink.closed and len(sink.values) == 4


class ChunkId(SequenceNode):
    """Outputs, for each frame, the start index of the chunk it was rendered in (+ input)."""

    type_name = "chunk_id"

    def __init__(self, length=8, overlap=3, add_input=False):
        super().__init__()
        self.chunk_length, self.chunk_overlap, self.add_input = length, overlap, add_input
        self.chunks = []

    def render_chunk(self, frames):
        self.chunks.append([f.index for f in frames])
        start = float(frames[0].index)
        return [f.data * 0 + start + (f.data if self.add_input else 0) for f in frames]


def test_chunk_layout_covers_everything_once():
    for length in range(1, 40):
        starts = chunk_starts(length, 8, 3)
        covered = set()
        for s in starts:
            covered |= set(range(s, min(s + 8, length)))
        assert covered == set(range(length))
        for n in range(length):
            parts = chunk_plan(n, length, 8, 3)
            assert sum(p.weight for p in parts) == pytest.approx(1.0)
            assert all(p.start <= n < p.stop <= length for p in parts)
            # the sequence node's window is exactly the frames of those chunks
            window = needed_frames(ChunkId(length=8, overlap=3), n, [length])[0]
            assert window == sorted({i for p in parts for i in range(p.start, p.stop)})


def test_sequence_node_blends_overlaps_linearly():
    node = ChunkId(length=8, overlap=3)
    out = vidfx.apply(node, ramp(20))
    values = [float(o.mean()) for o in out]
    assert node.chunks[0] == list(range(0, 8)) and node.chunks[1] == list(range(5, 13))
    assert values[:5] == [0.0] * 5
    # frames 5, 6, 7 are shared by chunks starting at 0 and 5: weights 1/4, 2/4, 3/4 for the later one
    assert values[5:8] == pytest.approx([5 * 0.25, 5 * 0.5, 5 * 0.75])
    assert values[8] == 5.0
    assert len(node.chunks) == len(chunk_starts(20, 8, 3))  # each chunk rendered once


def test_static_scene_is_identical_across_chunk_borders():
    still = [torch.full((3, 4, 4), 0.25)] * 30
    out = vidfx.apply(ChunkId(length=8, overlap=3, add_input=False), still)

    # a model whose output does not depend on the chunk gives identical frames everywhere
    class Same(ChunkId):
        def render_chunk(self, frames):
            return [f.data * 2 for f in frames]

    out = vidfx.apply(Same(), still)
    assert all(torch.equal(out[0], o) for o in out)


def test_two_input_node_and_numpy_frames():
    fg = [np.zeros((4, 5, 4), np.uint8) for _ in range(3)]
    for i, f in enumerate(fg):
        f[..., 0] = 255
        f[..., 3] = 255 if i == 1 else 0
    bg = [np.full((4, 5, 3), 128, np.uint8) for _ in range(3)]
    out = vidfx.apply("over", fg, bg)
    assert out[0][0].mean() == pytest.approx(128 / 255)
    assert out[1][0].mean() == pytest.approx(1.0) and out[1][1].mean() == pytest.approx(0.0)


def test_trim_and_select_remap_indices():
    assert [float(o.mean()) for o in vidfx.apply("trim", ramp(10), start=3, end=6)] == [3, 4, 5]
    assert [float(o.mean()) for o in vidfx.apply("trim", ramp(10), start=7)] == [7, 8, 9]
    assert [float(o.mean()) for o in vidfx.apply("select", ramp(10), every=4, offset=1)] == [1, 5, 9]


def test_size_changing_nodes():
    frames = ramp(2, (3, 10, 20))
    assert vidfx.apply("resize", frames, width=40)[0].shape == (3, 20, 40)
    assert vidfx.apply("crop", frames, x=2, y=1, width=5, height=4)[0].shape == (3, 4, 5)
    padded = vidfx.apply("pad", ramp(1, (4, 2, 2)), left=1, top=2)[0]
    assert padded.shape == (4, 4, 3) and padded[3, 0, 0] == 0


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(vidfx.VidfxError, match="no CUDA"):
            resolve_device("cuda")


class SumOfTwo(SequenceNode):
    """A two-input sequence node: checks both inputs come at the same frame numbers."""

    type_name = "sum_of_two"
    num_inputs = 2
    chunk_length = 5
    chunk_overlap = 2

    def render_chunk(self, frames, others):
        assert [f.index for f in frames] == [f.index for f in others]
        return [a.data + b.data for a, b in zip(frames, others, strict=True)]


def test_sequence_node_gets_every_input_at_the_chunk_frames():
    node = SumOfTwo()
    assert needed_frames(node, 4, [12, 12]) == [list(range(8))] * 2  # frame 4 is in chunks 0-4 and 3-7
    assert needed_frames(node, 4, [12, 3])[1] == [0, 1, 2]  # clamped to the shorter input
    a = vidfx.Clip.from_frames(np.stack([np.full((4, 6, 3), i / 20, np.float32) for i in range(12)]))
    b = vidfx.Clip.from_frames(np.stack([np.full((4, 6, 3), 0.5, np.float32) for _ in range(12)]))
    out = [f.data for f in a.apply(node, b)]
    assert len(out) == 12
    for i, data in enumerate(out):
        assert torch.allclose(data, torch.full_like(data, i / 20 + 0.5), atol=1e-6)
