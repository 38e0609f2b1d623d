"""The built-in resize and colour nodes (their resampling kernels and transfer functions are
tested in test_ops.py)."""

import pytest
import torch

import vidfx
from vidfx.ops import resample


@pytest.mark.parametrize("kernel", resample.KERNELS)
def test_resize_node_uses_the_shared_resampler(kernel):
    x = torch.rand(3, 30, 40)
    out = vidfx.apply("resize", [x], width=17, height=0, kernel=kernel)[0]
    assert out.shape == (3, 13, 17)
    assert torch.equal(out, resample.resize(x, 13, 17, kernel))


def test_colour_node_keeps_alpha_and_tags():
    rgba = [torch.full((4, 2, 2), 0.5)]
    out = vidfx.apply("colour", rgba, source="srgb", target="linear")[0]
    assert out[3].eq(0.5).all() and out[0, 0, 0] == pytest.approx(0.21404, abs=1e-4)
    grey = vidfx.apply("colour", [torch.full((1, 2, 2), 0.5)], source="srgb", target="linear")[0]
    assert grey.shape == (1, 2, 2) and grey[0, 0, 0] == pytest.approx(0.21404, abs=1e-4)
