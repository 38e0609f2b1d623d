"""Building blocks of the VSR network: BlurPool, the high-frequency shuttle split,
residual blocks, temporal attention and flow warping. All are local in space (no global
pooling or normalisation across the image), so spatial tiling gives the same result."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

_BINOMIAL = torch.tensor([1.0, 3.0, 3.0, 1.0])  # separable 4-tap blur kernel


def _blur_kernel(channels: int) -> torch.Tensor:
    k = torch.outer(_BINOMIAL, _BINOMIAL)
    k = k / k.sum()
    return k.expand(channels, 1, 4, 4).contiguous()


class LowPass(nn.Module):
    """Depthwise 4x4 binomial blur, same size out (replicate padding). The low-pass filter
    of BlurPool and of the high-frequency shuttle."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("kernel", _blur_kernel(channels), persistent=False)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (1, 2, 1, 2), mode="replicate")
        return F.conv2d(x, self.kernel.to(x.dtype), groups=self.channels)


class BlurPool(nn.Module):
    """Anti-aliased stride-2 downsampling (Zhang 2019): low-pass, then keep every second pixel.

    Replaces every stride-2 downsampling in the encoder, so the encoder is (nearly)
    shift-equivariant: shifting the input by 2 pixels shifts the output by exactly 1, and a
    1-pixel shift changes the output far less than plain subsampling does.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.blur = LowPass(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blur(x)[..., ::2, ::2]


def hf_split(f: torch.Tensor, lowpass: LowPass) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``f`` into (low, high) frequencies with ``low + high == f``; the high part is
    what the high-frequency shuttle sends through the skip connection."""
    low = lowpass(f)
    return low, f - low


class ResBlock(nn.Module):
    """conv3x3 - LeakyReLU - conv3x3, plus the input."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(x), 0.1))


class TemporalAttention(nn.Module):
    """Multi-head self-attention along time, independently at every pixel.

    Input (B, T, C, H, W). Frame t attends to frames t-radius..t+radius (a band mask), so a
    model trained on short clips behaves the same inside long chunks. Pre-LayerNorm over
    channels, residual output; the output projection starts at zero (the block starts as
    the identity).
    """

    def __init__(self, channels: int, heads: int = 2, radius: int = 3):
        super().__init__()
        if channels % heads:
            raise ValueError("channels must be divisible by heads")
        self.heads = heads
        self.radius = radius
        self.norm = nn.LayerNorm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c, h, w = x.shape
        if t == 1:
            return x
        tokens = x.permute(0, 3, 4, 1, 2).reshape(b * h * w, t, c)
        q, k, v = self.qkv(self.norm(tokens)).chunk(3, dim=-1)
        split = lambda z: z.reshape(b * h * w, t, self.heads, c // self.heads).transpose(1, 2)
        idx = torch.arange(t, device=x.device)
        mask = (idx[:, None] - idx[None, :]).abs() <= self.radius
        out = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=mask)
        out = self.proj(out.transpose(1, 2).reshape(b * h * w, t, c))
        out = out.reshape(b, h, w, t, c).permute(0, 3, 4, 1, 2)
        return x + out


def flow_warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``x`` (N, C, H, W) at ``p + flow(p)``; ``flow`` is (N, 2, H, W) in pixels (dx, dy).

    Bilinear, border padding. With ``flow`` from frame a to frame b, warping b's features
    gives them in a's geometry.
    """
    n, _, h, w = x.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=x.device, dtype=x.dtype),
                            torch.arange(w, device=x.device, dtype=x.dtype), indexing="ij")
    gx = (xs + flow[:, 0].to(x.dtype)) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys + flow[:, 1].to(x.dtype)) * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack((gx, gy), dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)
