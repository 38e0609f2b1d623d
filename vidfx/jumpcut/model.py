"""The synthesizer: cross-modal attention over several source frames + a small modulated generator.

Following Wang et al. 2024 ("Jump Cut Smoothing for Talking Heads"):

- keypoint features of the *target* are the attention queries, keypoint features of the *sources*
  the keys, and image features of the sources the values. One softmax runs over every position of
  every source, so appearance is gathered from several frames and, per target position, the
  source whose keypoints match best wins (robust to a bad keypoint in one source);
- the attention also yields, per source, an expected sampling position (a flow) and a weight;
- a small generator inspired by Co-Mod-GAN (a global code from the source encoder modulates the
  decoder) refines flows, predicts blending logits and an RGB residual from the warped features.

The output is composed at any resolution: flows and weights are upsampled and applied to the
full-resolution source frames, so the model runs at ``size`` (e.g. 128) but keeps source detail.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from vidfx.ops.weights import Weights

from .keymap import KEYMAP_CHANNELS

FAMILY = "jumpcut"  # the family tag in jumpcut weights files


@dataclass
class SynthConfig:
    """Model size. ``small`` (CPU, shipped) is the default; ``paper`` is a wider/deeper variant."""

    size: int = 128  # working resolution (square)
    dim: int = 64  # attention feature width
    value_dim: int = 64
    base: int = 32  # conv width at full working resolution
    style_dim: int = 64
    num_sources: int = 4
    # a second whole-frame candidate beside the crossfade: the DIS flow interpolation of the end frames
    flow_candidate: bool = False
    keymap_channels: int = KEYMAP_CHANNELS  # keypoint-map channels read (files from before irises and hands: 8)

    @classmethod
    def paper(cls) -> SynthConfig:
        """A larger configuration in the spirit of the paper (GPU training)."""
        return cls(size=256, dim=128, value_dim=128, base=64, style_dim=256)


GEO_SIGMA = 0.15  # attention bias: spread around the keypoint-predicted position (in -1..1 units)
CHOICE_SCALE = 0.05  # attention bias: one nat per this much keypoint displacement between target and source


def conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv + LeakyReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.2, inplace=True))


class Encoder(nn.Module):
    """Conv encoder to 1/8 resolution; returns the 1/8 features and the 1/2-resolution ones."""

    def __init__(self, cin: int, base: int, cout: int):
        super().__init__()
        self.first = conv(cin, base, 2)
        self.down = nn.Sequential(
            conv(base, base * 2, 2), conv(base * 2, base * 2), conv(base * 2, base * 2, 2), conv(base * 2, base * 2)
        )
        self.out = nn.Conv2d(base * 2, cout, 1)

    def forward(self, x):
        f = self.first(x)
        return self.out(self.down(f)), f


class ModConv(nn.Module):
    """3x3 conv whose input channels are scaled per sample by a style code (co-modulation)."""

    def __init__(self, cin: int, cout: int, style_dim: int):
        super().__init__()
        self.affine = nn.Linear(style_dim, cin)
        nn.init.zeros_(self.affine.weight)
        nn.init.ones_(self.affine.bias)
        self.conv = nn.Conv2d(cin, cout, 3, 1, 1)

    def forward(self, x, style):
        return F.leaky_relu(self.conv(x * self.affine(style)[:, :, None, None]), 0.2)


class CrossModalAttention(nn.Module):
    """Target keypoint features (queries) attend to source keypoint features (keys) and gather
    source image features (values), jointly over all sources and positions."""

    def __init__(self, dim: int):
        super().__init__()
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.log_temp = nn.Parameter(torch.tensor(0.0))

    def forward(self, q_feat, k_feat, v_feat, bias=None):
        """q_feat (B, Nq, D), k_feat (B, S, Nk, D), v_feat (B, S, Nk, Dv), optional additive logit
        ``bias`` (B, Nq, S, Nk) -> gathered (B, Nq, Dv), attention (B, Nq, S, Nk)."""
        b, s, nk, d = k_feat.shape
        q = self.q(q_feat)
        k = self.k(k_feat).reshape(b, s * nk, d)
        logits = q @ k.transpose(1, 2) * (d**-0.5) * self.log_temp.exp() * 4.0
        if bias is not None:
            logits = logits + bias.reshape(b, -1, s * nk)
        attn = logits.softmax(-1)
        out = attn @ v_feat.reshape(b, s * nk, -1)
        return out, attn.reshape(b, -1, s, nk)


DETAIL_WINDOW = 2.0  # the local window of the detail energy, in working-grid pixels (Gaussian sigma)
MAX_DETAIL_GAIN = 2.0  # each pass amplifies a detail band at most this much (2 ** DETAIL_PASSES in all)
DETAIL_PASSES = 3
# edges of the restored bands (Gaussian sigmas, output pixels): the finest detail, which averaging
# and resampling lose most; restoring coarser bands as well cost 0.1-0.2 dB more PSNR and SSIM
# below the crossfade's on the validation identities (docs/jumpcut.md)
ENERGY_SIGMAS = (0.5, 1.0)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    from kornia.filters import gaussian_blur2d

    k = 2 * math.ceil(3 * sigma) + 1
    return gaussian_blur2d(x, (k, k), (sigma, sigma), border_type="replicate")


def fine_band(x: torch.Tensor, scale: float) -> torch.Tensor:
    """The detail finer than the working grid: ``x`` minus its Gaussian blur with sigma =
    ``scale`` (full-resolution pixels per working pixel, at least 1).

    Shape:
        - x: :math:`(B, C, H, W)`; output: same
    """
    return x - _blur(x, max(1.0, float(scale)))


def detail_bands(x: torch.Tensor) -> list[torch.Tensor]:
    """The finest detail in bands between the blurs of :data:`ENERGY_SIGMAS`: ``x`` minus its
    blur with sigma 0.5, then that blur minus the blur with sigma 1.

    Shape:
        - x: :math:`(B, C, H, W)`; output: one tensor like ``x`` per band
    """
    blurred = [x] + [_blur(x, s) for s in ENERGY_SIGMAS]
    return [hi - lo for hi, lo in zip(blurred[:-1], blurred[1:])]


def detail_energy(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Local energy of each of the :func:`detail_bands`, mean over channels, averaged over a
    Gaussian window of :data:`DETAIL_WINDOW` working pixels.

    Shape:
        - x: :math:`(B, C, H, W)`; output: :math:`(B, N, H, W)`, N = number of bands
    """
    sigma = DETAIL_WINDOW * max(1.0, float(scale))
    e = torch.cat([b.pow(2).mean(1, keepdim=True) for b in detail_bands(x)], 1)
    return _blur(e, sigma)


def source_detail_energy(sources: torch.Tensor, scale: float) -> torch.Tensor:
    """:func:`detail_energy` of each source image.

    Shape:
        - sources: :math:`(B, S, 3, H, W)`; output: :math:`(B, S, N, H, W)`, N = number of bands
    """
    return torch.stack([detail_energy(sources[:, i], scale) for i in range(sources.shape[1])], 1)


def restore_detail_energy(
    image: torch.Tensor, target: torch.Tensor, amount: torch.Tensor | float, scale: float
) -> torch.Tensor:
    """``image`` with each detail band scaled so that its local energy reaches ``target``.

    Blending sources whose fine detail is not aligned (pores, hair, teeth of two frames) averages
    the detail toward zero: two equally weighted, unrelated textures keep half their energy. This
    is the variance-preserving fix of texture blending: each band of :func:`detail_bands` is
    amplified by ``sqrt(target / energy)``, between 1 and :data:`MAX_DETAIL_GAIN` per pass, in
    :data:`DETAIL_PASSES` passes, so aligned detail (energy already on target) is left alone and
    the blend is never softened. ``amount`` (0..1, a number or a per-pixel map) mixes the restored
    image with ``image``.

    Shape:
        - image: :math:`(B, 3, H, W)`; target: :math:`(B, N, H, W)` (:func:`detail_energy`);
          amount: :math:`(B, 1, H, W)` or a float; output: like image
    """
    eps = 1e-10  # 8-bit rounding alone leaves ~1e-6 in the finest band
    out = image
    # the Gaussian bands overlap in frequency, so one pass falls short (about 0.8 of the target
    # energy on a blend of two half-pixel-shifted frames, 0.94 after two, 0.99 after three)
    for _ in range(DETAIL_PASSES):
        gain = ((target + eps) / (detail_energy(out, scale) + eps)).sqrt().clamp(1.0, MAX_DETAIL_GAIN)
        out = out + sum((gain[:, i : i + 1] - 1.0) * band for i, band in enumerate(detail_bands(out)))
    return image + amount * (out - image)


DETAIL_SHARPNESS = 4.0  # source selection for the carried detail: weights ** this, renormalised


def carried_detail(frames: torch.Tensor, weights: torch.Tensor, blend: torch.Tensor, scale: float) -> torch.Tensor:
    """The fine detail of the best-weighted warped source minus the blend's, times the sources'
    total weight: added to ``blend`` it puts one real source's detail where the blend has an
    average of several (which cancels where they disagree), and leaves alone what the blend
    takes from the whole-frame candidates (a still region the crossfade renders exactly). The
    source is chosen softly (weights to the power
    :data:`DETAIL_SHARPNESS`, renormalised), so no seams appear where the choice changes.
    "Fine" is :func:`fine_band` at ``scale`` (full-resolution pixels per working pixel).

    Shape:
        - frames: :math:`(B, S, 3, H, W)` warped sources; weights: :math:`(B, S, H, W)`
        - blend: :math:`(B, 3, H, W)`; output: :math:`(B, 3, H, W)`
    """
    choice = (DETAIL_SHARPNESS * torch.log(weights + 1e-8)).softmax(1)
    top = (choice[:, :, None] * frames).sum(1)
    return weights.sum(1, keepdim=True) * (fine_band(top, scale) - fine_band(blend, scale))


class SynthNet(nn.Module):
    """Renders a target frame from source frames, their keypoint maps and the target keypoint map."""

    def __init__(self, cfg: SynthConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or SynthConfig()
        self.kp_enc = Encoder(cfg.keymap_channels, cfg.base // 2, cfg.dim)
        self.img_enc = Encoder(3 + cfg.keymap_channels, cfg.base // 2, cfg.value_dim)
        self.attn = CrossModalAttention(cfg.dim)
        self.style = nn.Sequential(
            nn.Linear(cfg.value_dim, cfg.style_dim), nn.LeakyReLU(0.2), nn.Linear(cfg.style_dim, cfg.style_dim)
        )
        s = cfg.num_sources
        c8 = cfg.value_dim + cfg.dim + 3 * s
        self.dec8 = nn.ModuleList(
            [ModConv(c8, cfg.base * 2, cfg.style_dim), ModConv(cfg.base * 2, cfg.base * 2, cfg.style_dim)]
        )
        self.dec4 = nn.ModuleList([ModConv(cfg.base * 2, cfg.base, cfg.style_dim)])
        self.dec2 = nn.ModuleList([ModConv(cfg.base + cfg.base // 2, cfg.base, cfg.style_dim)])
        self.num_whole = 2 if cfg.flow_candidate else 1  # whole-frame candidates: crossfade (+ flow)
        c1 = cfg.base + cfg.keymap_channels + 3 * (s + self.num_whole)
        self.dec1 = nn.ModuleList([ModConv(c1, cfg.base // 2, cfg.style_dim)])
        # per source: flow residual (2) + blend logit (1); crossfade candidate logit; RGB residual (3); gate (1);
        # then, with the flow candidate, its logit (last channel)
        self.head = nn.Conv2d(cfg.base // 2, 3 * s + 1 + 3 + 1 + (self.num_whole - 1), 3, 1, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(
        self,
        src_img,
        src_map,
        tgt_map,
        fade,
        kp_flow,
        out_sources=None,
        use_fade: bool = True,
        flow_frame=None,
        detail: float = 0.0,
        energy: float = 0.0,
        still=None,
        source_energy=None,
    ):
        """Predict the target frame.

        src_img (B, S, 3, R, R), src_map (B, S, C, R, R), tgt_map (B, C, R, R), fade (B, 3, R, R): the
        crossfade of the two end frames (a candidate the model may fall back on), kp_flow (B, S, 2, R, R):
        per source, where each target pixel lies in that source according to the keypoints (a
        piecewise-linear mesh warp, grid_sample coordinates in -1..1).
        ``out_sources``: optional (B, S, 3, H, W) full-resolution sources (and ``fade`` then at H, W)
        for composing a larger output. ``flow_frame`` (like ``fade``): the flow-interpolated frame, the
        second whole-frame candidate (required when the config has ``flow_candidate``).
        ``detail`` (full resolution only): how much of the fine detail (the band finer than the
        working grid) comes from the most-weighted warped source instead of the blend, which
        averages the sources' detail away where they disagree (0 = the blend as it is).
        ``energy`` (full resolution only): how far the fine band's local energy is brought back to
        that of the warped sources where the blend (sources, crossfade, flow frame) still
        averages unaligned detail (:func:`restore_detail_energy`; 0 = off, 1 = fully).
        ``still`` (B, 1, H, W) at the output size, optional: where the end frames have not moved
        (1) the output fades into the crossfade ``fade``, before the detail energy is restored.
        ``source_energy`` (B, S, bands, H, W), optional: :func:`detail_energy` of each of
        ``out_sources``; the same for every target frame of a transition, so a caller rendering
        several passes it in once computed (computed here when None).
        Returns (image (B, 3, H, W), aux dict).
        """
        b, s, _, r, _ = src_img.shape
        c = self.cfg.keymap_channels  # maps may carry more channels than an older synthesizer reads
        src_map, tgt_map = src_map[:, :, :c], tgt_map[:, :c]
        small = lambda t: t if t.shape[-1] == r else F.interpolate(t, size=(r, r), mode="area")  # noqa: E731
        fade_small = small(fade)
        if self.num_whole > 1:
            if flow_frame is None:
                raise ValueError("this synthesizer needs the flow-interpolated frame (flow_frame)")
            fade_small = torch.cat([fade_small, small(flow_frame)], 1)
        q_feat, q_full = self.kp_enc(tgt_map)
        k_feat, _ = self.kp_enc(src_map.flatten(0, 1))
        v_feat, _ = self.img_enc(torch.cat([src_img, src_map], 2).flatten(0, 1))
        h4, w4 = q_feat.shape[-2:]
        nq = h4 * w4
        ys, xs = torch.meshgrid(
            torch.linspace(-1 + 1 / h4, 1 - 1 / h4, h4), torch.linspace(-1 + 1 / w4, 1 - 1 / w4, w4), indexing="ij"
        )
        grid = torch.stack([xs, ys], -1).reshape(1, 1, 1, nq, 2).to(q_feat)
        # keypoint geometry in the keys: a key is favoured where the keypoints say the query's point
        # lies in that source, and sources whose keypoints sit closer to the target's are favoured
        kp_small = F.adaptive_avg_pool2d(kp_flow.flatten(1, 2), (h4, w4)).reshape(b, s, 2, nq).permute(0, 3, 1, 2)
        dist2 = ((grid - kp_small.unsqueeze(-2)) ** 2).sum(-1)  # (B, Nq, S, Nk)
        disp = (kp_small - grid.reshape(1, nq, 1, 2)).abs().sum(-1)  # (B, Nq, S)
        bias = -dist2 / GEO_SIGMA**2 - disp.unsqueeze(-1) / CHOICE_SCALE
        gathered, attn = self.attn(
            q_feat.flatten(2).transpose(1, 2),
            k_feat.flatten(2).transpose(1, 2).reshape(b, s, nq, -1),
            v_feat.flatten(2).transpose(1, 2).reshape(b, s, nq, -1),
            bias,
        )
        # per-source weight and expected sampling position (in -1..1 coordinates)
        w_src = attn.sum(-1)  # (B, Nq, S)
        pos = (attn.unsqueeze(-1) * grid).sum(-2) / (w_src.unsqueeze(-1) + 1e-6)  # (B, Nq, S, 2)
        ident = grid.reshape(1, nq, 1, 2)
        to_map = lambda t: t.transpose(1, 2).reshape(b, -1, h4, w4)  # noqa: E731
        style = self.style(v_feat.mean((2, 3)).reshape(b, s, -1).mean(1))
        x = torch.cat([to_map(gathered), q_feat, to_map(w_src), to_map((kp_small - ident).flatten(2))], 1)
        for layer in self.dec8:
            x = layer(x, style)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        for layer in self.dec4:
            x = layer(x, style)
        x = F.interpolate(x, size=q_full.shape[-2:], mode="bilinear", align_corners=False)
        for layer in self.dec2:
            x = layer(torch.cat([x, q_full], 1), style)
        x = F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False)
        # the keypoint (mesh) warp is the starting flow; the generator refines it
        coarse = kp_flow
        warped = torch.stack(
            [
                F.grid_sample(
                    src_img[:, i], coarse[:, i].permute(0, 2, 3, 1), align_corners=False, padding_mode="border"
                )
                for i in range(s)
            ],
            1,
        )
        x = torch.cat([x, tgt_map, warped.flatten(1, 2), fade_small], 1)
        for layer in self.dec1:
            x = layer(x, style)
        out = self.head(x)
        flows = coarse + 0.1 * out[:, : 2 * s].reshape(b, s, 2, r, r)
        w_map = F.interpolate(to_map(w_src), size=(r, r), mode="bilinear", align_corners=False)
        fade_logit = out[:, 3 * s : 3 * s + 1] if use_fade else torch.full_like(out[:, :1], -1e4)
        whole_logits = [fade_logit]
        if self.num_whole > 1:
            whole_logits.append(out[:, 3 * s + 5 : 3 * s + 6] if use_fade else torch.full_like(out[:, :1], -1e4))
        logits = torch.cat([out[:, 2 * s : 3 * s] + torch.log(w_map + 1e-4)] + whole_logits, 1)
        resid, gate = out[:, 3 * s + 1 : 3 * s + 4], torch.sigmoid(out[:, 3 * s + 4 : 3 * s + 5] - 3.0)
        if out_sources is None:
            big_src, big_fade, size, sampling = src_img, fade, (r, r), "bilinear"
        else:
            # full resolution: bicubic sampling keeps more of the sources' fine detail than bilinear
            big_src, big_fade, size, sampling = out_sources, fade, out_sources.shape[-2:], "bicubic"
            up = lambda t: F.interpolate(t, size=size, mode="bilinear", align_corners=False)  # noqa: E731
            flows = up(flows.flatten(1, 2)).reshape(b, s, 2, *size)
            logits, resid, gate = up(logits), up(resid), up(gate)
        weights = logits.softmax(1)
        frames = torch.stack(
            [
                F.grid_sample(
                    big_src[:, i],
                    flows[:, i].permute(0, 2, 3, 1),
                    mode=sampling,
                    align_corners=False,
                    padding_mode="border",
                )
                for i in range(s)
            ],
            1,
        )
        blend = (weights[:, :s, None] * frames).sum(1) + weights[:, s : s + 1] * big_fade
        if self.num_whole > 1:
            blend = blend + weights[:, s + 1 : s + 2] * flow_frame
        if detail > 0 and out_sources is not None:
            blend = blend + detail * carried_detail(frames, weights[:, :s], blend, size[-1] / r)
        image = blend + gate * torch.tanh(resid)
        if still is not None:
            image = still * big_fade + (1 - still) * image
        if energy > 0 and out_sources is not None:
            scale = size[-1] / r
            share = weights[:, :s].sum(1, keepdim=True)
            # each source's detail energy, measured before warping (resampling softens) and moved by its flow
            if source_energy is None:
                source_energy = source_detail_energy(big_src, scale)
            src_energy = torch.stack(  # (B, S, bands, H, W)
                [
                    F.grid_sample(
                        source_energy[:, i],
                        flows[:, i].permute(0, 2, 3, 1),
                        align_corners=False,
                        padding_mode="border",
                    )
                    for i in range(s)
                ],
                1,
            )
            target = (weights[:, :s, None] * src_energy).sum(1) / (share + 1e-6)  # (B, bands, H, W)
            # everywhere (the target where sources barely count is still their weighted mix): the
            # whole-frame candidates average unaligned detail too, and where the blend's detail is
            # already aligned (a still background) the gain stays 1
            image = restore_detail_energy(image, target, energy, scale)
        return image, {
            "attention": attn,
            "weights": weights,
            "gate": gate,
            "coarse_warped": warped,
            "attn_pos": pos,
            "kp_pos": kp_small,
            "source_weights": w_src,
            "coarse_weights": w_map / (w_map.sum(1, keepdim=True) + 1e-6),
        }

    @classmethod
    def with_flow_candidate(cls, net: SynthNet) -> SynthNet:
        """``net`` upgraded with the flow candidate, behaving exactly as before except that the
        crossfade's blend weight is now shared equally by crossfade and flow (new input weights zero,
        the flow logit a copy of the crossfade logit, both log 2 lower); fine-tune it from there."""
        if net.num_whole > 1:
            return net
        new = cls(SynthConfig(**{**asdict(net.cfg), "flow_candidate": True}))
        state = net.state_dict()
        for name, value in new.state_dict().items():
            old = state[name]
            if value.shape == old.shape:
                value.copy_(old)
            elif name == "dec1.0.conv.weight":  # new input channels (the flow frame) start at zero
                value.zero_()
                value[:, : old.shape[1]] = old
            elif name == "dec1.0.affine.weight":
                value.zero_()
                value[: old.shape[0]] = old
            elif name == "dec1.0.affine.bias":
                value.fill_(1.0)
                value[: old.shape[0]] = old
            elif name.startswith("head."):
                fade = 3 * net.cfg.num_sources
                value[: old.shape[0]] = old
                value[old.shape[0] :] = old[fade : fade + 1]
                if name == "head.bias":  # two equal logits, each log 2 lower: same total weight as before
                    value[fade] -= math.log(2.0)
                    value[old.shape[0] :] -= math.log(2.0)
            else:
                raise KeyError(name)
        new.train(net.training)
        return new

    def config_dict(self) -> dict:
        """The config as a plain dict (saved next to the weights)."""
        return asdict(self.cfg)


def build_synthnet(weights: Weights) -> SynthNet:
    """The (untrained) SynthNet of a jumpcut weights file's config; for ``vidfx.ops.weights``."""
    return SynthNet(SynthConfig(**{"keymap_channels": 8, **weights.config}))
