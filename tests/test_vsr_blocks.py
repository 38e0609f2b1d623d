"""VSR building blocks and the network: shapes, gradients, BlurPool shift-equivariance,
the high-frequency shuttle split, ablation switches, and degradations."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidfx.vsr.arch import (
    BidirectionalPropagation,
    DecoderLevel,
    EncoderLevel,
    FeatureExtractor,
    PropagationBranch,
    Upsampler,
    VideoSR,
    grow,
)
from vidfx.vsr.blocks import BlurPool, LowPass, ResBlock, TemporalAttention, hf_split
from vidfx.vsr.config import VSRConfig, make_config
from vidfx.vsr.degrade import degrade
from vidfx.vsr.losses import PatchDiscriminator, charbonnier, r1_penalty

torch.manual_seed(0)


def _check_grads(module: torch.nn.Module, out: torch.Tensor, inp: torch.Tensor | None = None) -> None:
    out.float().pow(2).mean().backward()
    grads = [p.grad for p in module.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    if grads:
        assert any(g.abs().sum() > 0 for g in grads)
    if inp is not None:
        assert inp.grad is not None and torch.isfinite(inp.grad).all() and inp.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "make, shape, out_shape",
    [
        (lambda: LowPass(4), (2, 4, 11, 13), (2, 4, 11, 13)),
        (lambda: BlurPool(4), (2, 4, 12, 14), (2, 4, 6, 7)),
        (lambda: ResBlock(8), (2, 8, 10, 10), (2, 8, 10, 10)),
        (lambda: FeatureExtractor(8, 2), (2, 3, 10, 12), (2, 8, 10, 12)),
        (lambda: PropagationBranch(16, 8, 1), (2, 16, 10, 12), (2, 8, 10, 12)),
        (lambda: EncoderLevel(8, 12, 1, True), (2, 8, 10, 12), (2, 12, 5, 6)),
        (lambda: EncoderLevel(8, 12, 1, False), (2, 8, 10, 12), (2, 12, 5, 6)),
        (lambda: TemporalAttention(8, 2, 1), (2, 5, 8, 6, 7), (2, 5, 8, 6, 7)),
        (lambda: PatchDiscriminator(8), (2, 3, 32, 32), (2, 1, 4, 4)),
    ],
)
def test_block_shapes_and_gradients(make, shape, out_shape):
    m = make()
    x = torch.rand(shape, requires_grad=True)
    y = m(x)
    if isinstance(y, tuple):
        y = y[0]
    assert y.shape == out_shape
    _check_grads(m, y, x)


def test_decoder_level_attention_and_upsampler():
    d = DecoderLevel(8, 1, 2, 2, attention=True)
    x = torch.rand(2 * 4, 8, 6, 6, requires_grad=True)
    y = d(x, t=4, attend=True)
    assert y.shape == x.shape
    _check_grads(d, y, x)
    for hr, scale in [((), 2), ((), 4), ((6,), 4)]:
        u = Upsampler(8, hr, scale)
        x = torch.rand(2, 8, 5, 7, requires_grad=True)
        lr = torch.rand(2, 3, 5, 7)
        y = u(x, lr)
        assert y.shape == (2, 3, 5 * scale, 7 * scale)
        _check_grads(u, y, x)


def test_temporal_attention_band_mask():
    """Frame 0 must not see frame 4 when radius is 1: changing frame 4 leaves output 0 alone."""
    a = TemporalAttention(8, 2, radius=1)
    torch.nn.init.normal_(a.proj.weight)
    x = torch.rand(1, 5, 8, 3, 3)
    y1 = a(x)
    x2 = x.clone()
    x2[:, 4] += torch.randn_like(x2[:, 4])
    y2 = a(x2)
    assert torch.allclose(y1[:, 0], y2[:, 0], atol=1e-6)
    assert not torch.allclose(y1[:, 3], y2[:, 3], atol=1e-4)


def test_propagation():
    p = BidirectionalPropagation(8, 1)
    feats = torch.rand(2, 4, 8, 6, 7, requires_grad=True)
    flow = torch.randn(2, 4, 2, 6, 7)
    y = p(feats, flow, flow)
    assert y.shape == feats.shape
    _check_grads(p, y, feats)


@pytest.mark.parametrize(
    "scale, off",
    [
        (2, None),
        (4, None),
        (4, "use_unet"),
        (4, "use_attention"),
        (4, "use_propagation"),
        (4, "use_blurpool"),
        (4, "use_hf_shuttle"),
    ],
)
def test_network_shapes_gradients_and_switches(scale, off):
    cfg = make_config("tiny", scale, **({off: False} if off else {}))
    m = VideoSR(cfg)
    lr = torch.rand(1, 3, 3, 13, 11, requires_grad=True)  # odd size: padded inside
    flow = torch.zeros(1, 3, 2, 13, 11)
    y = m(lr, flow, flow)
    assert y.shape == (1, 3, 3, 13 * scale, 11 * scale)
    _check_grads(m, y, lr)
    if off == "use_propagation":
        assert m.propagation is None
    if off == "use_attention":
        assert all(d.attn is None for d in m.decoder)


def test_per_frame_mode_needs_no_flow_and_is_per_frame():
    m = VideoSR(make_config("tiny", 4)).eval()
    lr = torch.rand(1, 3, 3, 16, 16)
    with torch.no_grad():
        y = m(lr, propagate=False, attend=False)
        y0 = m(lr[:, :1], propagate=False, attend=False)
    assert torch.allclose(y[:, 0], y0[:, 0], atol=1e-5)
    with pytest.raises(ValueError):
        m(lr)


def test_base_and_paper_configs_build():
    for size in ("base", "paper"):
        cfg = make_config(size, 4)
        assert VSRConfig.from_dict(cfg.to_dict()) == cfg
    m = VideoSR(make_config("base", 2))
    assert m(torch.rand(1, 2, 3, 8, 8), torch.zeros(1, 2, 2, 8, 8), torch.zeros(1, 2, 2, 8, 8)).shape == (
        1,
        2,
        3,
        16,
        16,
    )


def test_grow_adds_blocks_without_changing_the_function():
    torch.manual_seed(0)
    small = VideoSR(make_config("tiny", 4)).eval()
    for p in small.parameters():  # no zero-initialised parts, so every path matters
        torch.nn.init.normal_(p, std=0.05)
    big = grow(small, prop_blocks=1, lr_dec_blocks=1, extract_blocks=2).eval()
    assert big.cfg.prop_blocks == 1 and big.cfg.lr_dec_blocks == 1 and big.cfg.extract_blocks == 2
    n_small = sum(p.numel() for p in small.parameters())
    assert sum(p.numel() for p in big.parameters()) > n_small
    x = torch.rand(1, 4, 3, 12, 14)
    fp, fn = torch.randn(1, 4, 2, 12, 14), torch.randn(1, 4, 2, 12, 14)
    with torch.no_grad():
        torch.testing.assert_close(big(x, fp, fn), small(x, fp, fn), rtol=0, atol=1e-6)
    # the new blocks are trainable: one gradient step changes the output
    big.train()
    big(x, fp, fn).mean().backward()
    assert big.propagation.forward_branch.body[0].conv2.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="residual blocks"):
        grow(small, channels=48)
    with pytest.raises(ValueError, match="smaller"):
        grow(big, prop_blocks=0)


def test_blurpool_shift_equivariance():
    torch.manual_seed(1)
    x = torch.rand(1, 4, 40, 40)
    bp = BlurPool(4)
    # a 2-pixel shift of the input is exactly a 1-pixel shift of the output (inside)
    y, y2 = bp(x), bp(torch.roll(x, shifts=(2, 2), dims=(2, 3)))
    assert torch.allclose(torch.roll(y, shifts=(1, 1), dims=(2, 3))[..., 3:-3, 3:-3], y2[..., 3:-3, 3:-3], atol=1e-6)
    # a 1-pixel shift changes the output far less than plain stride-2 subsampling
    xs = torch.roll(x, shifts=1, dims=3)
    change_blur = (bp(xs) - bp(x))[..., 2:-2, 2:-2].abs().mean()
    change_plain = (xs[..., ::2, ::2] - x[..., ::2, ::2])[..., 2:-2, 2:-2].abs().mean()
    assert change_blur < 0.5 * change_plain


def test_hf_shuttle_split_sums_back():
    f = torch.randn(2, 6, 17, 19)
    lp = LowPass(6)
    low, high = hf_split(f, lp)
    assert torch.allclose(low + high, f, atol=1e-6)
    assert high.abs().mean() > 0.1  # noise is mostly high frequency
    const = torch.full((1, 6, 9, 9), 0.7)
    assert lp(const).sub(0.7).abs().max() < 1e-6
    assert hf_split(const, lp)[1].abs().max() < 1e-6


def test_lowpass_is_the_trained_4x4_binomial_with_replicate_padding():
    # the shipped weights were trained with exactly this filter (pad 1 before, 2 after)
    f = torch.randn(2, 6, 17, 19)
    k = torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 64
    ref = F.conv2d(F.pad(f, (1, 2, 1, 2), mode="replicate"), k.expand(6, 1, 4, 4), groups=6)
    assert torch.equal(LowPass(6)(f), ref)


def test_losses():
    a, b = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    assert charbonnier(a, a) < 2e-3 < charbonnier(a, b)
    d = PatchDiscriminator(8)
    r1 = r1_penalty(d, torch.rand(2, 3, 32, 32))
    r1.backward()
    assert torch.isfinite(r1) and r1 > 0


@pytest.mark.parametrize("mode", ["bi", "bd", "realistic"])
def test_degradations(mode):
    rng = np.random.default_rng(0)
    clip = np.random.default_rng(1).random((4, 64, 48, 3), dtype=np.float32)
    for _ in range(3 if mode == "realistic" else 1):
        lr = degrade(clip, 4, mode, rng)
        assert lr.shape == (4, 16, 12, 3) and lr.dtype == np.float32
        assert np.isfinite(lr).all()
