"""Resampling kernels and colour transfer functions used by the built-in nodes."""
import pytest
import torch
import torch.nn.functional as F

import vidfx
from vidfx.nodes import colour, resample


def test_resize_matches_torch_bicubic_with_same_kernel(monkeypatch):
    x = torch.rand(3, 30, 40)
    monkeypatch.setitem(resample._KERNEL_FN, "bicubic", (lambda v: resample._cubic(v, -0.75), 2.0))
    resample.resample_matrix.cache_clear()
    ours = resample.resize(x, 75, 100, "bicubic", antialias=False)
    theirs = F.interpolate(x[None], size=(75, 100), mode="bicubic", align_corners=False)[0]
    resample.resample_matrix.cache_clear()
    assert torch.allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("kernel", resample.KERNELS)
def test_kernels_keep_flat_images_flat(kernel):
    flat = torch.full((1, 37, 53), 0.3)
    for size in [(12, 20), (80, 111)]:
        assert torch.allclose(resample.resize(flat, *size, kernel), torch.full((1, *size), 0.3), atol=1e-5)


def test_downscale_is_antialiased():
    # a 1-pixel checkerboard has no content a ~3x smaller image can hold: it must become grey
    y, x = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    checker = ((x + y) % 2).float()[None]
    small = resample.resize(checker, 21, 21, "bicubic")
    assert small.std() < 0.01 and small.mean() == pytest.approx(0.5, abs=0.01)
    aliased = resample.resize(checker, 21, 21, "bicubic", antialias=False)
    assert aliased.std() > 0.1


def test_area_downscale_is_block_mean():
    x = torch.arange(16.0).reshape(1, 4, 4)
    assert torch.allclose(resample.resize(x, 2, 2, "area"), torch.tensor([[[2.5, 4.5], [10.5, 12.5]]]))


@pytest.mark.parametrize("transfer", colour.TRANSFERS)
def test_transfer_round_trip(transfer):
    x = torch.linspace(0, 1, 101)
    assert torch.allclose(colour.from_linear(colour.to_linear(x, transfer), transfer), x, atol=1e-5)


def test_srgb_known_values():
    assert float(colour.to_linear(torch.tensor(0.5), "srgb")) == pytest.approx(0.21404, abs=1e-4)
    assert float(colour.from_linear(torch.tensor(0.18), "rec709")) == pytest.approx(0.40901, abs=1e-4)


def test_colour_node_keeps_alpha_and_tags():
    rgba = [torch.full((4, 2, 2), 0.5)]
    out = vidfx.apply("colour", rgba, source="srgb", target="linear")[0]
    assert out[3].eq(0.5).all() and out[0, 0, 0] == pytest.approx(0.21404, abs=1e-4)


def test_mirror_boundary_is_symmetric_and_differs_from_replicate_at_edges():
    x = torch.rand(1, 9, 13)
    for size in [(4, 6), (20, 27)]:
        out = resample.resize(x, *size, "bicubic", boundary="mirror")
        flipped = resample.resize(x.flip(-1), *size, "bicubic", boundary="mirror")
        assert torch.allclose(out.flip(-1), flipped, atol=1e-6)
    ramp = torch.arange(8.0)[None, None].expand(1, 8, 8)
    mirror = resample.resize(ramp, 8, 16, "bicubic", boundary="mirror")[0, 0]
    replicate = resample.resize(ramp, 8, 16, "bicubic")[0, 0]
    assert not torch.allclose(mirror[:2], replicate[:2]) and torch.allclose(mirror[6:10], replicate[6:10])
