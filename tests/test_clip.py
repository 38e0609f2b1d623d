"""The console API: clips as values (read, chain, slice, frame, iterate, write) and
configured nodes kept between calls."""

from __future__ import annotations

import pytest
import torch

import vidfx
from vidfx.core.node import Node
from vidfx.core.registry import register, unregister

SAMPLE = "sample_media/motion_320x180.mp4"


class CountingGain(Node):
    """Multiplies by ``gain``; counts configure and close calls across all instances."""

    type_name = "test_counting_gain"
    params = (vidfx.Param("gain", "float", 2.0),)
    configured = 0
    closed = 0

    def configure(self, inputs, device):
        type(self).configured += 1
        return inputs[0]

    def render(self, n, inputs):
        return inputs[0][0].with_data(inputs[0][0].data * self.p.gain)

    def close(self):
        type(self).closed += 1


@pytest.fixture
def counting():
    CountingGain.configured = CountingGain.closed = 0
    register(CountingGain)
    yield CountingGain
    unregister(CountingGain)


def test_chain_slice_and_frames_match_the_engine():
    clip = vidfx.read(SAMPLE, device="cpu")
    assert len(clip) == 64 and clip.info.width == 320
    smooth = clip.temporal_average(radius=2)
    part = smooth[10:20]
    assert len(part) == 10
    reference = vidfx.apply("temporal_average", [f.data for f in clip], radius=2)
    assert torch.equal(part.frame(0).data, reference[10])
    assert torch.equal(part[-1].data, reference[19])
    every = smooth[::4]
    assert len(every) == 16 and every.info.fps == clip.info.fps / 4
    assert torch.equal(every.frame(3).data, reference[12])
    frames = list(part)  # iteration: its own runtime, in order
    assert [f.index for f in frames] == list(range(10))
    assert all(torch.equal(a.data, b) for a, b in zip(frames, reference[10:20]))
    with pytest.raises(IndexError):
        part.frame(10)


def test_nodes_by_name_and_unknown_names():
    clip = vidfx.read(SAMPLE, device="cpu")
    assert isinstance(clip.resize(width=160, height=90), vidfx.Clip)
    assert clip.resize(width=160, height=90).frame(0).data.shape == (3, 90, 160)
    assert clip.apply("pad", left=2, right=2, top=0, bottom=0).info.width == 324
    with pytest.raises(AttributeError):
        clip.no_such_effect()


def test_frame_keeps_configured_nodes_until_closed(counting):
    clip = vidfx.read(SAMPLE, device="cpu").test_counting_gain(gain=0.5)
    first = clip.frame(0)
    for n in (1, 2, 30, 5):
        clip.frame(n)
    assert counting.configured == 1  # configured once for five frames
    assert torch.allclose(first.data * 2, vidfx.read(SAMPLE, device="cpu").frame(0).data)
    clip.close()
    assert counting.closed == 1
    clip.frame(3)
    assert counting.configured == 2
    clip.close()


def test_graph_frame_keeps_configured_nodes_until_the_graph_changes(counting):
    g = vidfx.Graph()
    src = g.read(SAMPLE)
    gain = g.add("test_counting_gain", src, gain=0.5)
    a = g.frame(gain, 0)
    g.frame(gain, 1)
    assert counting.configured == 1
    g.set_param(gain, "gain", 0.25)  # a change: configured again on the next call
    b = g.frame(gain, 0)
    assert counting.configured == 2 and counting.closed == 1
    assert torch.allclose(a.data, b.data * 2)
    g.close()
    assert counting.closed == 2


def test_write_renders_the_clip(tmp_path):
    clip = vidfx.read(SAMPLE, device="cpu")
    out = tmp_path / "part_%04d.png"
    summary = clip.temporal_average(radius=1)[4:9].write(str(out))
    assert list(summary.frames.values()) == [5]
    written = vidfx.read(str(out), device="cpu")
    expected = vidfx.apply("temporal_average", [f.data for f in clip], radius=1)[4:9]
    assert len(written) == 5
    for n in range(5):  # 8-bit PNG: within one code value
        assert (written.frame(n).data - expected[n]).abs().max() <= 0.5 / 255 + 1e-6


def test_clip_from_frames_and_two_input_nodes():
    fg = vidfx.Clip.from_frames([torch.ones(4, 8, 8) * 0.5] * 3, device="cpu")
    bg = vidfx.Clip.from_frames([torch.zeros(3, 8, 8)] * 3, device="cpu")
    out = fg.over(bg)
    assert len(out) == 3 and torch.allclose(out.frame(2).data, torch.full((3, 8, 8), 0.25))
