"""The translate generator (img2img-turbo adaptation of the fill student) and its training steps,
on a tiny backbone and real CamVid crops."""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import nn

from vidfx.fill.data import read_rgb
from vidfx.fill.model import LazyFill, LazyFillConfig
from vidfx.ops.gan import PatchDiscriminator
from vidfx.ops.warp import backward_warp
from vidfx.translate.model import GATE_SCALE, LoRALinear, TranslateConfig, TranslateNet, add_lora
from vidfx.translate.train import inside, paired_step, random_motion, unpaired_step

TINY = LazyFillConfig(dim=32, heads=2, dec_layers=1, ctx_layers=1, enc_channels=(16, 32))


def tiny_backbone() -> LazyFill:
    torch.manual_seed(0)
    model = LazyFill(TINY)
    dec = model.decoder
    for m in [dec.head, dec.final_mod, *(b.modulation for b in dec.blocks)]:  # zero in a fresh model
        for p in m.parameters():
            nn.init.normal_(p, std=0.05)
    return model


def test_lora_starts_as_the_base_layer_and_only_adapters_train():
    base = nn.Linear(8, 5)
    lora = LoRALinear(base, rank=2)
    x = torch.randn(3, 8)
    assert torch.allclose(lora(x), base(x))
    assert not base.weight.requires_grad and lora.down.weight.requires_grad
    block = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Sequential(nn.Linear(4, 2)))
    assert sorted(add_lora(block, 2)) == ["0", "2.0"]


def test_pretrained_net_freezes_the_backbone_and_zero_inits_skip_and_direction():
    backbone = tiny_backbone()
    net = TranslateNet(TranslateConfig(backbone=TINY, lora_rank=4), backbone)
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert all(("lora" in n or ".down." in n or ".up." in n) for n in trainable if "blocks" in n)
    assert not any(n.startswith("backbone.encoder.stage") for n in trainable)
    assert {"skip.weight", "direction.weight", "backbone.decoder.embed_noisy.weight"} <= trainable
    x = torch.rand(2, 3, 32, 48)
    assert torch.equal(net(x), x.clamp(0, 1))  # the residual's gate starts at 0: the input as it is
    assert net.gate.requires_grad
    with torch.no_grad():
        net.gate.fill_(1.0 / GATE_SCALE)
    a = net(x, torch.tensor([0, 0]))
    b = net(x, torch.tensor([1, 1]))
    assert torch.equal(a, b)  # the direction embedding starts at zero
    with torch.no_grad():
        net.direction.weight[1] = 1.0
    assert not torch.allclose(a, net(x, torch.tensor([1, 1])))
    assert a.shape == x.shape and 0 <= a.min() and a.max() <= 1


def test_scratch_net_is_the_identity_at_start_and_trains_everything():
    torch.manual_seed(0)
    net = TranslateNet(TranslateConfig(backbone=TINY, pretrained=False))
    assert all(p.requires_grad for p in net.parameters()) and not net.lora_layers
    x = torch.rand(1, 3, 32, 32)
    assert torch.allclose(net(x), x)  # zero head and zero skip: the residual is 0
    edges = TranslateNet(TranslateConfig(backbone=TINY, pretrained=False, in_channels=1))
    assert edges(torch.rand(2, 1, 32, 32)).shape == (2, 3, 32, 32)


def test_affine_output_is_a_local_colour_transform_applied_at_any_size():
    from vidfx.translate.pipeline import TranslatePipeline, TranslateSettings

    net = TranslateNet(TranslateConfig(backbone=TINY, lora_rank=4, output="affine"), tiny_backbone()).eval()
    x = torch.rand(1, 3, 32, 48)
    assert torch.equal(net(x), x)  # zero-initialised transforms: the identity
    assert net.affine_head.weight.requires_grad
    with torch.no_grad():
        nn.init.normal_(net.affine_head.weight, std=0.05)
        out = net(x)
    assert not torch.allclose(out, x)
    # a pure colour transform: a flat input stays flat inside each token (no invented texture)
    flat = torch.full((1, 3, 32, 48), 0.4)
    coeffs = net.coefficients(flat)
    assert coeffs.shape == (1, 12, 4, 6)
    # the node's pipeline applies the same transforms; at the canvas size it is the network
    pipe = TranslatePipeline(TranslateSettings(temporal=0.0), net=net)
    frame = x[0].permute(1, 2, 0).numpy()
    assert np.abs(pipe.run(frame[None])[0] - out[0].permute(1, 2, 0).numpy()).max() < 1e-5
    # a frame twice the canvas: the field is interpolated, not the picture, so an edge stays sharp
    half = TranslatePipeline(TranslateSettings(temporal=0.0, work_size=48), net=net)
    big = np.zeros((64, 96, 3), np.float32)
    big[:, 48:] = 1.0
    res = half.run(big[None])[0]
    assert np.abs(res[:, 47] - res[:, 48]).mean() > 0.5
    bad = TranslateConfig(backbone=TINY, in_channels=1, output="affine")
    try:
        TranslateNet(bad)
    except ValueError:
        pass
    else:
        raise AssertionError("an edge model cannot have an affine output")


def test_random_motion_warps_consistently():
    rng = np.random.default_rng(0)
    flow = random_motion(3, 32, rng)
    assert flow.shape == (3, 2, 32, 32) and flow.abs().max() < 10
    valid = inside(flow)
    assert 0.5 < float(valid.mean()) < 1.0
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    x = (0.5 + 0.4 * torch.sin(xx / 6 + yy / 9)).expand(3, 3, 32, 32)
    # a per-pixel colour map commutes with warping: such a "translation" has no temporal loss
    assert torch.allclose(backward_warp(x, flow) ** 2, backward_warp(x**2, flow), atol=0.01)
    assert not torch.allclose(backward_warp(x, flow), x, atol=0.01)


def args(**kw) -> argparse.Namespace:
    base = dict(batch=2, crop=32, gan=0.5, identity=1.0, temporal=1.0)
    return argparse.Namespace(**{**base, **kw})


def test_training_steps_move_only_trainable_weights(shared_clips):
    data = shared_clips.parent
    day = [read_rgb(p).astype(np.float32) / 255 for p in sorted((data / "camvid" / "train").glob("0006R0*.jpg"))[:2]]
    dusk = [read_rgb(p).astype(np.float32) / 255 for p in sorted((data / "camvid" / "train").glob("0001TP*.jpg"))[:2]]
    net = TranslateNet(TranslateConfig(backbone=TINY, lora_rank=4), tiny_backbone())
    frozen = {n: p.detach().clone() for n, p in net.named_parameters() if not p.requires_grad}
    params = [p for p in net.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    discs = nn.ModuleList([PatchDiscriminator(), PatchDiscriminator()])
    opt_g = torch.optim.Adam(params, lr=1e-3)
    opt_d = torch.optim.Adam(discs.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    losses = unpaired_step(net, discs, opt_g, opt_d, params, day, dusk, args(), rng, torch.device("cpu"))
    assert set(losses) == {"cycle", "identity", "gan_g", "gan_d", "temporal"}
    assert all(np.isfinite(v) for v in losses.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, params, strict=True))
    assert all(torch.equal(frozen[n], p) for n, p in net.named_parameters() if n in frozen)

    edges_net = TranslateNet(TranslateConfig(backbone=TINY, pretrained=False, in_channels=1))
    params = list(edges_net.parameters())
    disc = PatchDiscriminator(4)
    losses = paired_step(
        edges_net,
        disc,
        torch.optim.Adam(params, lr=1e-3),
        torch.optim.Adam(disc.parameters(), lr=1e-3),
        params,
        day,
        args(),
        rng,
        torch.device("cpu"),
    )
    assert set(losses) == {"recon", "gan_g", "gan_d", "temporal"} and losses["recon"] > 0


def test_selection_prefers_dusk_only_within_the_structure_budget():
    from vidfx.translate.train import MIOU_SLACK, SELECT_MARGIN, better

    base = {"fd": 10.0, "miou": 78.0}
    budget = MIOU_SLACK - SELECT_MARGIN
    kept = {"fd": 8.0, "miou": 78.0 - budget + 0.1}
    lost = {"fd": 6.0, "miou": 78.0 - budget - 0.1}  # more dusk-like, but too much structure lost
    assert better(kept, base, base, "day2dusk")
    assert not better(lost, kept, base, "day2dusk")
    assert better({"fd": 7.5, "miou": 77.0}, kept, base, "day2dusk")
    assert better(kept, lost, base, "day2dusk")  # anything within the budget beats what is not
    assert better({"l1": 0.1}, {"l1": 0.2}, {}, "edges") and not better({"l1": 0.3}, {"l1": 0.2}, {}, "edges")
