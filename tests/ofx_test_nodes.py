"""Nodes that exist only for the OFX bridge tests.

The test server imports this module (``vidfx serve --import ofx_test_nodes``), which registers
them there; the test process registers ``TEST_NODES`` only while the OFX tests run.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from vidfx.core.node import HostHints, Node, SequenceNode
from vidfx.core.params import Param
from vidfx.core.registry import register


class OfxTestSlow(Node):
    """Returns its input after sleeping (to kill or abort the server mid-render)."""

    type_name = "ofx_test_slow"
    description = "Test node: input x 0.5 after a delay."
    params = (
        Param("delay", "float", 0.0, "seconds to sleep", min=0),
        Param("marker", "str", "", "file created when a render starts (tests wait for it)"),
    )

    def render(self, n, inputs):
        if self.p.marker:
            Path(self.p.marker).touch()
        time.sleep(self.p.delay)
        return inputs[0][0].with_data(inputs[0][0].data * 0.5)


class OfxTestChunks(SequenceNode):
    """A sequence node whose output depends on the whole chunk (frame/2 + chunk mean/2)."""

    type_name = "ofx_test_chunks"
    description = "Test node: frame/2 + chunk mean/2."
    params = (Param("length", "int", 4, "chunk length", min=2),)

    def __init__(self, name=None, **values):
        super().__init__(name, **values)
        self.chunk_length = self.p.length
        self.chunk_overlap = 1

    def render_chunk(self, frames):
        mean = torch.stack([f.data for f in frames]).mean(0)
        return [f.data * 0.5 + mean * 0.5 for f in frames]


class OfxTestMix(Node):
    """Two inputs mixed by ``transition`` (0: first, 1: second)."""

    type_name = "ofx_test_mix"
    description = "Test node: mix of two inputs."
    num_inputs = 2
    host = HostHints(transition_param="transition")
    params = (Param("transition", "float", 0.5, "mix", min=0, max=1), Param("gain", "float", 1.0, "gain on the result"))

    def render(self, n, inputs):
        a, b = inputs[0][0].data, inputs[1][0].data
        t = self.p.transition
        return inputs[0][0].with_data((a * (1 - t) + b * t) * self.p.gain)


class OfxTestBlocks(Node):
    """Means of 4x4-pixel blocks: a result that depends on the absolute resolution, so the
    bridge renders it at full resolution at a proxy scale (``scale_mode="full"``)."""

    type_name = "ofx_test_blocks"
    description = "Test node: 4x4 block means (resolution-dependent)."
    host = HostHints(scale_mode="full")

    def render(self, n, inputs):
        x = inputs[0][0].data
        c, h, w = x.shape
        blocks = torch.nn.functional.avg_pool2d(x[None], 4, ceil_mode=True)
        return inputs[0][0].with_data(blocks.repeat_interleave(4, -1).repeat_interleave(4, -2)[0, :, :h, :w])


TEST_NODES = (OfxTestSlow, OfxTestChunks, OfxTestMix, OfxTestBlocks)

for _cls in TEST_NODES:  # the test fixture removes them again when the OFX tests end
    register(_cls)
