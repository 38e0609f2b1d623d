"""The VideoGigaGAN-style video super-resolution network.

Data flow for a clip of T low-resolution frames (h x w):

1. per-frame feature extractor at LR (conv + residual blocks);
2. flow-guided bidirectional recurrent propagation at LR (BasicVSR-style, first order):
   a backward branch then a forward branch, each warping its previous hidden state to the
   current frame with optical flow (OpenCV DIS, computed outside the network), fused
   residually into the features;
3. GigaGAN's asymmetric U-Net: a short encoder (BlurPool downsampling; the
   high-frequency shuttle sends f - LowPass(f) through each skip) and a longer decoder
   with temporal attention in every block, which continues past LR resolution with
   pixel-shuffle stages up to x2/x4;
4. the output is a residual on top of an upsampling of the input (bilinear, then
   nearest for the last pixel-shuffle step).

Every part can be switched off (see :class:`~vidfx.vsr.config.VSRConfig`).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops.warp import backward_warp
from .blocks import BlurPool, LowPass, ResBlock, TemporalAttention
from .config import VSRConfig


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.1)


class FeatureExtractor(nn.Module):
    """conv3x3 from RGB, then residual blocks; one frame at a time."""

    def __init__(self, channels: int, blocks: int):
        super().__init__()
        self.head = nn.Conv2d(3, channels, 3, padding=1)
        self.body = nn.Sequential(*[ResBlock(channels) for _ in range(blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(_lrelu(self.head(x)))


class PropagationBranch(nn.Module):
    """One direction of recurrent propagation: hidden = body(concat(inputs, warped hidden))."""

    def __init__(self, in_channels: int, channels: int, blocks: int):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.conv_mid = nn.Conv2d(channels, channels, 3, padding=1)
        self.body = nn.Sequential(*[ResBlock(channels) for _ in range(blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.conv_mid(_lrelu(self.conv_in(x))))


class BidirectionalPropagation(nn.Module):
    """Flow-guided bidirectional recurrent propagation over the frames of a clip.

    ``flow_next[:, t]`` maps frame t to t+1 (used to pull the backward hidden state from
    t+1), ``flow_prev[:, t]`` maps frame t to t-1 (forward hidden state from t-1).
    Returns the features plus a 1x1 fusion of both hidden states (a residual update).
    """

    def __init__(self, channels: int, blocks: int):
        super().__init__()
        self.backward_branch = PropagationBranch(2 * channels, channels, blocks)
        self.forward_branch = PropagationBranch(2 * channels, channels, blocks)
        self.fuse = nn.Conv2d(2 * channels, channels, 1)

    def forward(self, feats: torch.Tensor, flow_prev: torch.Tensor, flow_next: torch.Tensor) -> torch.Tensor:
        b, t, c, h, w = feats.shape
        back: list[torch.Tensor] = [None] * t  # type: ignore[list-item]
        hidden = feats.new_zeros(b, c, h, w)
        for i in range(t - 1, -1, -1):
            if i < t - 1:
                hidden = backward_warp(hidden, flow_next[:, i])
            hidden = self.backward_branch(torch.cat([feats[:, i], hidden], dim=1))
            back[i] = hidden
        out = []
        hidden = feats.new_zeros(b, c, h, w)
        for i in range(t):
            if i > 0:
                hidden = backward_warp(hidden, flow_prev[:, i])
            hidden = self.forward_branch(torch.cat([feats[:, i], hidden], dim=1))
            out.append(feats[:, i] + self.fuse(torch.cat([back[i], hidden], dim=1)))
        return torch.stack(out, dim=1)


class EncoderLevel(nn.Module):
    """Downsample by 2 (BlurPool then conv, or a plain stride-2 conv), then residual blocks.

    ``forward(x, low)`` may be given ``low = LowPass(x)`` already computed (the
    high-frequency shuttle needs it too); BlurPool is then just ``low[::2, ::2]``.
    """

    def __init__(self, c_in: int, c_out: int, blocks: int, blurpool: bool):
        super().__init__()
        self.blurpool = BlurPool(c_in) if blurpool else None
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, stride=1 if blurpool else 2)
        self.body = nn.Sequential(*[ResBlock(c_out) for _ in range(blocks)])

    def forward(self, x: torch.Tensor, low: torch.Tensor | None = None) -> torch.Tensor:
        if self.blurpool is not None:
            x = low[..., ::2, ::2] if low is not None else self.blurpool(x)
        return self.body(_lrelu(self.conv(x)))


class DecoderLevel(nn.Module):
    """Residual blocks, then temporal attention across the clip's frames."""

    def __init__(self, channels: int, blocks: int, heads: int, radius: int, attention: bool):
        super().__init__()
        # blocks=0: nothing here; the next convolution (up-conv or upsampler) does the mixing
        self.body = nn.Sequential(*[ResBlock(channels) for _ in range(blocks)])
        self.attn = TemporalAttention(channels, heads, radius) if attention else None

    def forward(self, x: torch.Tensor, t: int, attend: bool) -> torch.Tensor:
        x = self.body(x)
        if self.attn is not None and attend:
            bt, c, h, w = x.shape
            x = self.attn(x.reshape(bt // t, t, c, h, w)).reshape(bt, c, h, w)
        return x


class Upsampler(nn.Module):
    """The decoder's stages above LR: conv + pixel-shuffle x2 per stage, the last to RGB."""

    def __init__(self, channels: int, hr_channels: tuple[int, ...], scale: int):
        super().__init__()
        self.stages = nn.ModuleList()
        c = channels
        for c_next in hr_channels:
            self.stages.append(nn.Conv2d(c, 4 * c_next, 3, padding=1))
            c = c_next
        last = scale // (2 ** len(hr_channels))
        if last * 2 ** len(hr_channels) != scale:
            raise ValueError(f"scale {scale} does not match {len(hr_channels)} x2 stages")
        self.to_rgb = nn.Conv2d(c, 3 * last * last, 3, padding=1)
        self.last = last

    def forward(self, x: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
        """``x``: LR features; ``lr``: the LR image. The output is a residual on top of a
        bilinear upsampling of ``lr`` to the size before the last pixel shuffle, added in
        the shuffled channel layout (so the big full-size interpolation is never made)."""
        for conv in self.stages:
            x = _lrelu(F.pixel_shuffle(conv(x), 2))
        x = self.to_rgb(x)
        pre = 2 ** len(self.stages)
        base = lr if pre == 1 else F.interpolate(lr, scale_factor=float(pre), mode="bilinear", align_corners=False)
        if self.last == 1:
            return x + base
        return F.pixel_shuffle(x + base.repeat_interleave(self.last * self.last, dim=1), self.last)


class VideoSR(nn.Module):
    """The whole network. ``forward(lr, flow_prev, flow_next)`` maps (B, T, 3, h, w) in 0..1
    to (B, T, 3, h*scale, w*scale). Any h, w >= 1 works (replicate padding inside).

    ``propagate``/``attend`` override the config per call (False = per-frame ablation with
    the same weights); training drops them at random so that both modes are trained.
    """

    def __init__(self, cfg: VSRConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        self.extract = FeatureExtractor(c, cfg.extract_blocks)
        self.propagation = BidirectionalPropagation(c, cfg.prop_blocks) if cfg.use_propagation else None
        levels = (c,) + tuple(cfg.enc_channels) if cfg.use_unet else (c,)
        self.levels = levels
        self.encoder = nn.ModuleList(
            EncoderLevel(levels[i], levels[i + 1], cfg.dec_blocks, cfg.use_blurpool) for i in range(len(levels) - 1)
        )
        self.lowpass = nn.ModuleList(LowPass(levels[i]) for i in range(len(levels) - 1))
        self.decoder = nn.ModuleList(
            DecoderLevel(
                levels[i],
                cfg.dec_blocks if i > 0 else cfg.lr_dec_blocks,
                cfg.attn_heads,
                cfg.attn_radius,
                cfg.use_attention and i >= cfg.attn_min_level,
            )
            for i in range(len(levels))
        )
        self.up = nn.ModuleList(nn.Conv2d(levels[i + 1], levels[i], 3, padding=1) for i in range(len(levels) - 1))
        self.upsampler = Upsampler(c, tuple(cfg.hr_channels), cfg.scale)

    @property
    def multiple(self) -> int:
        """Input sizes are padded internally to a multiple of this."""
        return 2 ** (len(self.levels) - 1)

    def forward(
        self,
        lr: torch.Tensor,
        flow_prev: torch.Tensor | None = None,
        flow_next: torch.Tensor | None = None,
        propagate: bool | None = None,
        attend: bool | None = None,
    ) -> torch.Tensor:
        cfg = self.cfg
        propagate = cfg.use_propagation if propagate is None else (propagate and cfg.use_propagation)
        attend = cfg.use_attention if attend is None else (attend and cfg.use_attention)
        b, t, _, h, w = lr.shape
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        x = lr.reshape(b * t, 3, h, w)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        hp, wp = h + ph, w + pw
        feats = self.extract(x)
        if propagate and self.propagation is not None:
            if flow_prev is None or flow_next is None:
                raise ValueError("propagation needs flow_prev and flow_next")
            if ph or pw:
                flow_prev = F.pad(flow_prev.reshape(b * t, 2, h, w), (0, pw, 0, ph), mode="replicate")
                flow_next = F.pad(flow_next.reshape(b * t, 2, h, w), (0, pw, 0, ph), mode="replicate")
            feats = self.propagation(
                feats.reshape(b, t, -1, hp, wp), flow_prev.reshape(b, t, 2, hp, wp), flow_next.reshape(b, t, 2, hp, wp)
            ).reshape(b * t, -1, hp, wp)
        # asymmetric U-Net: encoder below LR ...
        skips = []
        y = feats
        for i, enc in enumerate(self.encoder):
            low = self.lowpass[i](y) if (cfg.use_hf_shuttle or cfg.use_blurpool) else None
            skips.append(y - low if cfg.use_hf_shuttle else y)  # f_HF = f - LowPass(f)
            y = enc(y, low)
        # ... decoder back to LR with temporal attention, then past LR to the output size
        for i in range(len(self.levels) - 1, -1, -1):
            y = self.decoder[i](y, t, attend)
            if i > 0:
                y = _lrelu(self.up[i - 1](y))  # conv at the coarse level (cheap), then x2
                y = F.interpolate(y, scale_factor=2.0, mode="nearest") + skips[i - 1]
        if not cfg.use_unet:
            y = y + feats
        out = self.upsampler(y, x)[..., : h * cfg.scale, : w * cfg.scale]
        return out.reshape(b, t, 3, h * cfg.scale, w * cfg.scale)


def grow(model: VideoSR, **overrides) -> VideoSR:
    """A deeper copy of ``model`` that computes exactly the same function (function-preserving
    growth, for fine-tuning extra capacity on top of trained weights).

    ``overrides`` are new block counts, not increments, and may only add residual blocks
    (``extract_blocks``, ``prop_blocks``, ``dec_blocks``, ``lr_dec_blocks``); the new blocks
    start with a zero second convolution, so each is the identity until training moves it.
    """
    allowed = {"extract_blocks", "prop_blocks", "dec_blocks", "lr_dec_blocks"}
    bad = set(overrides) - allowed
    if bad:
        raise ValueError(f"grow: can only add residual blocks ({', '.join(sorted(allowed))}), not {sorted(bad)}")
    for k, v in overrides.items():
        if v < getattr(model.cfg, k):
            raise ValueError(f"grow: {k} {v} is smaller than the model's {getattr(model.cfg, k)}")
    bigger = VideoSR(dataclasses.replace(model.cfg, **overrides))
    missing, unexpected = bigger.load_state_dict(model.state_dict(), strict=False)
    if unexpected:
        raise ValueError(f"grow: weights left over: {unexpected}")
    for name in missing:
        layer = name.split(".")[-2]  # ResBlock parameters end in conv1/conv2 .weight/.bias
        if layer not in ("conv1", "conv2"):
            raise ValueError(f"grow: new parameter {name} is not part of a residual block")
        if layer == "conv2":
            nn.init.zeros_(bigger.get_parameter(name))
    return bigger.to(next(model.parameters()).device)
