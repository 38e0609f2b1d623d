"""Building blocks of the VSR network: BlurPool, the high-frequency shuttle split,
residual blocks and temporal attention (flow warping is :func:`vidfx.ops.warp.backward_warp`).
All are local in space (no global pooling or normalisation across the image), so spatial
tiling gives the same result."""

from __future__ import annotations

import kornia
import torch
import torch.nn as nn
import torch.nn.functional as F

_BINOMIAL = torch.tensor([1.0, 3.0, 3.0, 1.0])  # separable 4-tap blur kernel


def _blur_kernel() -> torch.Tensor:
    k = torch.outer(_BINOMIAL, _BINOMIAL)
    return (k / k.sum())[None]


class LowPass(nn.Module):
    """Depthwise 4x4 binomial blur, same size out (replicate padding, 1 before and 2 after:
    ``kornia.filters.filter2d``'s "same" padding of an even kernel). The low-pass filter of
    BlurPool and of the high-frequency shuttle.

    Shape:
        - x: :math:`(B, C, H, W)`, C = ``channels``
        - output: :math:`(B, C, H, W)`
    """

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("kernel", _blur_kernel(), persistent=False)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kornia.filters.filter2d(x, self.kernel, border_type="replicate")


# Not kornia.filters.BlurPool2D: it pads with zeros, the same amount on each side; the shipped weights were
# trained with this 4x4 kernel and replicate padding.
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
