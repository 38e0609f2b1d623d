"""The Ray backend: segment plans and halos, and real Ray runs giving the frames of a local run."""

from __future__ import annotations

import os
import random
import signal
import sys
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from vidfx.core.engine import build_runs, resolve_device
from vidfx.core.errors import GraphError, MediaError
from vidfx.core.frame import ClipInfo, Frame
from vidfx.core.graph import Graph
from vidfx.core.node import Node, SequenceNode, SourceNode
from vidfx.core.params import Param
from vidfx.core.scheduler import needed_frames
from vidfx.core.sink import ListSink
from vidfx.jumpcut.node import JumpCutNode
from vidfx.nodes.basic import Select, Trim
from vidfx.scale.backend import check_reachable, run_on_ray
from vidfx.scale.plan import Plan, frames_needed_by, halo_overhead, plan_segments, single_run_counts, upstream
from vidfx.scale.worker import render_range

MOTION = "sample_media/motion_320x180.mp4"

# --- synthetic nodes that record what they are given ------------------------------------------

LOG: set[tuple] = set()  # (node, output frame, input indices) per render; (node, "chunk", indices)
READS: list[int] = []  # frames the source was asked for


class Ramp(SourceNode):
    """Frame i: a small picture whose values depend on i; pts 3*i."""

    type_name = "test_ramp"
    params = (Param("frames", "int", 10, min=1),)

    def configure(self, inputs, device):
        return ClipInfo(width=3, height=2, fps=Fraction(25), num_frames=self.p.frames, channels=1)

    def read(self, n):
        READS.append(n)
        data = torch.arange(6, dtype=torch.float32).reshape(1, 2, 3) * 0.01 + n * 0.37
        return Frame(data, index=n, pts=3 * n)


class Window(Node):
    """Output n: a weighted sum of inputs n-before..n+after (weights differ, so order matters)."""

    type_name = "test_window"
    params = (Param("before", "int", 1, min=0), Param("after", "int", 1, min=0))

    def frames_needed(self, n):
        return [list(range(n - self.p.before, n + self.p.after + 1))]

    def render(self, n, inputs):
        frames = inputs[0]
        LOG.add((self.name, n, tuple(f.index for f in frames)))
        acc = torch.zeros_like(frames[0].data)
        for k, f in enumerate(frames):
            acc = acc + f.data * (0.3 + 0.1 * k)
        return frames[len(frames) // 2].with_data(acc / len(frames), index=n)


class Whole(Window):
    """A window node that must not be split."""

    type_name = "test_whole"
    splittable = False


class Mix(Node):
    """Two inputs with different windows: input 1 frames n-1, n; input 2 frame n+2."""

    type_name = "test_mix"
    num_inputs = 2

    def frames_needed(self, n):
        return [[n - 1, n], [n + 2]]

    def render(self, n, inputs):
        (a, b), (c,) = inputs
        LOG.add((self.name, n, (a.index, b.index, c.index)))
        return b.with_data(0.5 * a.data + 0.3 * b.data + 0.2 * c.data, index=n)


class Chunky(SequenceNode):
    """Each output frame depends on its whole chunk (frame + 0.5 x chunk mean + position)."""

    type_name = "test_chunky"
    params = (Param("chunk", "int", 5, min=2), Param("overlap", "int", 2, min=0))

    def __init__(self, name=None, **values):
        super().__init__(name, **values)
        self.chunk_length, self.chunk_overlap = self.p.chunk, self.p.overlap

    def render_chunk(self, frames):
        LOG.add((self.name, "chunk", tuple(f.index for f in frames)))
        mean = torch.stack([f.data for f in frames]).mean(0)
        return [f.data + 0.5 * mean + 0.01 * j for j, f in enumerate(frames)]


def random_graph(rng: random.Random) -> Graph:
    """A source, then 1-5 random steps: windows, trims, selects, chunked nodes, a 2-input mix."""
    g = Graph()
    src = g.add(Ramp(frames=rng.randint(8, 70)), name="src")
    current = src
    for i in range(rng.randint(1, 5)):
        kind = rng.choice(["window", "trim", "select", "chunky", "mix", "whole" if rng.random() < 0.2 else "window"])
        name = f"{kind}{i}"
        if kind == "window":
            node: Node = Window(before=rng.randint(0, 3), after=rng.randint(0, 3))
        elif kind == "whole":
            node = Whole(before=1, after=0)
        elif kind == "trim":
            start = rng.randint(0, 4)
            node = Trim(start=start, end=rng.choice([-1, start + rng.randint(3, 40)]))
        elif kind == "select":
            every = rng.randint(1, 3)
            node = Select(every=every, offset=rng.randint(0, every - 1))
        elif kind == "chunky":
            chunk = rng.randint(2, 8)
            node = Chunky(chunk=chunk, overlap=rng.randint(0, chunk - 1))
        else:
            side = g.add(Window(before=1, after=1), src, name=f"side{i}")
            current = g.add(Mix(), current, side, name=name)
            continue
        current = g.add(node, current, name=name)
    g.write(current, sink=ListSink())
    return g


def configured(g: Graph):
    """(order, lengths of the nodes the output needs, output name, runs), or None if the
    random graph has no frames (a trim past the end)."""
    order = g.order()
    try:
        runs = build_runs(order, resolve_device("cpu"))
    except Exception:
        return None
    out = g.outputs[0].input
    lengths = {name: runs[name].length for name, _, _ in upstream(order, out)}
    if lengths[out] <= 0:
        return None
    return order, lengths, out, runs


def needed_per_frame(order, lengths, out, start, stop) -> dict[str, set[int]]:
    """The frames each node needs, asking ``needed_frames`` for every single frame."""
    needed = {name: set() for name, _, _ in order}
    needed[out] = set(range(start, stop))
    for name, node, inputs in reversed(order):
        for n in needed[name] if inputs else ():
            for slot, idxs in enumerate(needed_frames(node, n, [lengths[i] for i in inputs])):
                needed[inputs[slot]].update(idxs)
    return needed


def render(g: Graph, out: str, start: int, stop: int) -> tuple[list[Frame], set[tuple], list[int]]:
    """Frames start..stop-1 of ``out`` rendered as a worker renders a segment (fresh runs)."""
    LOG.clear()
    READS.clear()
    runs = build_runs(g.order(), resolve_device("cpu"))
    sink = ListSink()
    render_range(runs[out], start, stop, sink)
    return sink.frames, set(LOG), list(READS)


# --- the plan ----------------------------------------------------------------------------------


def test_segments_cover_the_output_once_and_halos_match_a_single_run():
    rng = random.Random(7)
    graphs = 0
    while graphs < 40:
        g = random_graph(rng)
        made = configured(g)
        if made is None:
            continue
        graphs += 1
        order, lengths, out, _ = made
        length = lengths[out]
        plan = plan_segments(order, lengths, out, segment_frames=rng.randint(1, 12))
        kept = [n for seg in plan.segments for n in range(seg.start, seg.stop)]
        assert kept == list(range(length)), g  # every output frame once, in order
        whole, single_log, _ = render(g, out, 0, length)
        for seg in plan.segments:
            brute = needed_per_frame(upstream(order, out), lengths, out, seg.start, seg.stop)
            assert frames_needed_by(order, lengths, out, seg.start, seg.stop) == brute
            frames, log, reads = render(g, out, seg.start, seg.stop)
            assert [f.index for f in frames] == list(range(seg.start, seg.stop))
            for f, ref in zip(frames, whole[seg.start : seg.stop], strict=True):
                assert f.pts == ref.pts
                assert torch.equal(f.data, ref.data), (g, seg, f.index)
            # every frame (and every chunk) made from exactly the inputs of the single run
            assert log <= single_log, (g, seg, log - single_log)
            first, stop = seg.halo["src"]
            assert min(reads) >= first and max(reads) < stop, (g, seg, reads)


def test_chunk_halo_follows_the_global_chunk_layout():
    g = Graph()
    src = g.add(Ramp(frames=30), name="src")
    seq = g.add(Chunky(chunk=5, overlap=2), src, name="seq")
    g.write(seq, sink=ListSink())
    order, lengths, out, _ = configured(g)
    plan = plan_segments(order, lengths, out, segment_frames=10)
    # chunks start at 0, 3, 6, ...: frames 10..19 draw on chunks 6..10 to 18..22 (frame 19 blends 15..19, 18..22)
    assert [s.halo["src"] for s in plan.segments] == [(0, 14), (6, 23), (18, 30)]
    overhead = halo_overhead(plan, single_run_counts(order, lengths, out))
    # a single run processes chunks 0, 3, ..., 27 (9 x 5 + 3 frames); the segments process
    # chunks 0-9, 6-18 and 18-27: 20 + 25 + 18 frames
    assert overhead["seq"] == pytest.approx(63 / 48 - 1)
    assert overhead["src"] == pytest.approx((14 + 17 + 12) / 30 - 1)


def test_trim_and_select_remap_the_halo():
    g = Graph()
    src = g.add(Ramp(frames=100), name="src")
    cut = g.add(Trim(start=40, end=80), src, name="cut")
    thin = g.add(Select(every=2, offset=1), cut, name="thin")
    avg = g.add(Window(before=1, after=1), thin, name="avg")
    g.write(avg, sink=ListSink())
    order, lengths, out, _ = configured(g)
    plan = plan_segments(order, lengths, out, segment_frames=5)
    assert lengths[out] == 20
    # output n is cut frame 2n+1 = source 41+2n; the window reaches one output frame each side
    assert plan.segments[1].halo["src"] == (41 + 2 * 4, 41 + 2 * 10 + 1)


def test_a_node_that_cannot_be_split_keeps_the_output_whole():
    assert JumpCutNode.splittable is False and Window.splittable is True
    g = Graph()
    src = g.add(Ramp(frames=40), name="src")
    g.write(g.add(Whole(before=2, after=0), src, name="w"), sink=ListSink())
    order, lengths, out, _ = configured(g)
    plan = plan_segments(order, lengths, out, segment_frames=7)
    assert [(s.start, s.stop) for s in plan.segments] == [(0, 40)]
    assert "cannot be rendered in segments" in plan.whole
    assert Plan.from_json(plan.to_json()) == plan


# --- errors before any Ray run ------------------------------------------------------------------


def motion_graph(out: str, frames: int = 64, **options) -> Graph:
    g = Graph()
    src = g.read(MOTION)
    small = g.add("resize", src, width=64, height=36)
    if frames < 64:
        small = g.add("trim", small, start=0, end=frames)
    g.write(g.add("temporal_average", small, radius=2), out, **options)
    return g


def test_without_ray_the_backend_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(GraphError, match=r"pip install 'vidfx\[ray\]'"):
        run_on_ray(motion_graph(str(tmp_path / "out.mkv")))


def test_unreachable_cluster_unwritable_work_dir_and_unreadable_input_fail_in_one_line(tmp_path):
    out = tmp_path / "out.mkv"
    with pytest.raises(MediaError, match="cannot reach the Ray cluster at 127.0.0.1:1"):
        check_reachable("127.0.0.1:1")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(MediaError, match="work dir .*cannot write"):
        run_on_ray(motion_graph(str(out)), work_dir=str(blocker / "work"))
    g = Graph()
    g.write(g.read(str(tmp_path / "missing.mp4")), str(out))
    with pytest.raises(MediaError, match="missing.mp4"):
        run_on_ray(g, work_dir=str(tmp_path / "work"))
    assert not out.exists()


# --- real Ray runs ----------------------------------------------------------------------------


class KillOnce(Node):
    """Passes frames through; the first time it reaches frame ``at`` (no ``marker`` file yet)
    it creates the marker and kills its own process."""

    type_name = "test_kill_once"
    params = (Param("marker", "str", required=True), Param("at", "int", 0, min=0))

    def render(self, n, inputs):
        if n == self.p.at and not os.path.exists(self.p.marker):
            open(self.p.marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return inputs[0][0]


class FailWhile(Node):
    """Passes frames through, but raises MediaError from frame ``at`` on while ``marker`` exists."""

    type_name = "test_fail_while"
    params = (Param("marker", "str", required=True), Param("at", "int", 0, min=0))

    def render(self, n, inputs):
        if n >= self.p.at and os.path.exists(self.p.marker):
            raise MediaError(f"{self.name}: planned failure at frame {n}")
        return inputs[0][0]


@pytest.fixture(scope="module")
def cluster():
    """A real Ray cluster: a head and a second node, one CPU each, small object stores."""
    import ray  # vidfx[ray], part of vidfx[all]
    from ray.cluster_utils import Cluster

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the test nodes travel by value
    store = 100 * 2**20
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": store})
    c.add_node(num_cpus=1, object_store_memory=store)
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False)
    yield c
    ray.shutdown()
    c.shutdown()


def decoded(path) -> tuple[list[int], list[bytes], int]:
    """Every video frame's pts and pixels (as 16-bit RGB), and the number of audio streams."""
    with av.open(str(path)) as c:
        audio = len(c.streams.audio)
        frames = list(c.decode(video=0))
    return [f.pts for f in frames], [f.to_ndarray(format="rgb48le").tobytes() for f in frames], audio


def assert_same_video(a, b):
    pts_a, pix_a, audio_a = decoded(a)
    pts_b, pix_b, audio_b = decoded(b)
    assert pts_a == pts_b
    assert len(pix_a) == len(pix_b)
    assert all(x == y for x, y in zip(pix_a, pix_b)), "pixels differ"
    assert audio_a == audio_b


def test_ray_temporal_average_is_pixel_identical(cluster, tmp_path):
    local, remote = tmp_path / "local.mkv", tmp_path / "ray.mkv"
    motion_graph(str(local), codec="ffv1").run(device="cpu")
    seen = []
    summary = run_on_ray(motion_graph(str(remote), codec="ffv1"), workers=2, segment_frames=20, progress=seen.append)
    assert summary.frames == {str(remote): 64}
    assert [p.segments_done for p in seen] == [1, 2, 3, 4] and seen[-1].done == 64
    assert_same_video(local, remote)
    assert not os.path.exists(tmp_path / ".ray.mkv.vidfx-ray")  # the default work dir is removed


def vsr_graph(out: str) -> Graph:
    g = Graph()
    small = g.add("resize", g.read(MOTION), width=64, height=36)
    small = g.add("trim", small, start=0, end=24)
    g.write(g.add("vsr", small, scale=4, chunk=5, overlap=2), out, codec="ffv1")
    return g


def test_ray_vsr_chunks_blend_exactly_as_locally(cluster, tmp_path):
    local, remote = tmp_path / "local.mkv", tmp_path / "ray.mkv"
    vsr_graph(str(local)).run(device="cpu")
    summary = run_on_ray(vsr_graph(str(remote)), workers=2, segment_frames=10)
    assert summary.frames == {str(remote): 24}
    assert "3 segment(s)" in summary.messages[-1]
    assert_same_video(local, remote)


def test_a_killed_worker_loses_and_repeats_no_frame(cluster, tmp_path):
    local, remote = tmp_path / "local.mkv", tmp_path / "ray.mkv"
    motion_graph(str(local), frames=40, codec="ffv1").run(device="cpu")
    g = motion_graph(str(remote), frames=40, codec="ffv1")
    last = g.outputs[0].input
    g.outputs[0].input = g.add(KillOnce(marker=str(tmp_path / "killed"), at=25), last, name="kill")
    summary = run_on_ray(g, workers=2, segment_frames=10, work_dir=str(tmp_path / "work"))
    assert (tmp_path / "killed").exists()
    assert "1 retried" in summary.messages[-1]
    assert_same_video(local, remote)


def test_resume_reuses_finished_segments(cluster, tmp_path):
    local, remote, work = tmp_path / "local.mkv", tmp_path / "ray.mkv", tmp_path / "work"
    motion_graph(str(local), frames=40, codec="ffv1").run(device="cpu")
    marker = tmp_path / "fail"
    marker.write_text("")

    def graph():
        g = motion_graph(str(remote), frames=40, codec="ffv1")
        g.outputs[0].input = g.add(FailWhile(marker=str(marker), at=30), g.outputs[0].input, name="fail")
        return g

    with pytest.raises(MediaError, match="planned failure at frame 30"):
        run_on_ray(graph(), workers=1, segment_frames=10, work_dir=str(work))
    assert not remote.exists()
    finished = sorted(p.name for p in work.glob("segment_*.json"))
    assert finished == ["segment_00000.json", "segment_00001.json", "segment_00002.json"]
    marker.unlink()
    summary = run_on_ray(graph(), workers=1, segment_frames=10, work_dir=str(work), resume=True)
    assert "3 reused" in summary.messages[-1]
    assert_same_video(local, remote)


@pytest.mark.parametrize(
    ("source", "name", "options"),
    [
        ("sample_media/gradient_10bit_h265.mp4", "out.mkv", {"codec": "ffv1"}),  # 24000/1001, 10-bit
        ("sample_media/odd_size_642x362.mp4", "out.mov", {"codec": "prores_4444"}),  # 30 fps, odd size
        ("sample_media/tone_flash_640x360.mp4", "out.mov", {}),  # ProRes with audio
    ],
)
def test_odd_rates_sizes_and_audio_join_by_stream_copy(cluster, tmp_path, source, name, options):
    local, remote = tmp_path / f"local_{name}", tmp_path / f"ray_{name}"
    for path in (local, remote):
        g = Graph()
        g.write(g.add("temporal_average", g.read(source), radius=1), str(path), **options)
        if path == local:
            g.run(device="cpu")
        else:
            run_on_ray(g, workers=2, segment_frames=13)
    assert_same_video(local, remote)


def test_long_gop_output_is_encoded_once_with_the_same_timing(cluster, tmp_path):
    local, remote = tmp_path / "local.mp4", tmp_path / "ray.mp4"
    motion_graph(str(local), frames=40).run(device="cpu", frames=(5, 35))
    run_on_ray(motion_graph(str(remote), frames=40), workers=2, segment_frames=10, frames=(5, 35))
    pts_a, pix_a, _ = decoded(local)
    pts_b, pix_b, _ = decoded(remote)
    assert pts_a == pts_b and len(pts_a) == 30
    # not bit-identical: 16-bit RGB intermediates, and x264 with automatic threads does not even
    # repeat itself from one local run to the next (up to ~4 levels of 8 bits on a 64x36 frame)
    diffs = [
        np.abs(np.frombuffer(a, np.uint16).astype(np.int32) - np.frombuffer(b, np.uint16)).mean() / 256
        for a, b in zip(pix_a, pix_b, strict=True)
    ]
    assert max(diffs) < 8, diffs


def test_image_sequences_keep_their_numbers(cluster, tmp_path):
    outputs = {}
    for kind in ("local", "ray"):
        folder = tmp_path / kind
        folder.mkdir()
        g = motion_graph(str(folder / "f_%04d.png"), frames=30, start_number=1001)
        g.run(device="cpu") if kind == "local" else run_on_ray(g, workers=2, segment_frames=10)
        outputs[kind] = {p.name: p.read_bytes() for p in sorted(folder.glob("f_*.png"))}
    assert list(outputs["local"]) == [f"f_{n:04d}.png" for n in range(1001, 1031)]
    assert outputs["local"] == outputs["ray"]
