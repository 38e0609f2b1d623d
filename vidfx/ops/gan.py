"""The adversarial pieces shared by the trainers: non-saturating GAN losses and a PatchGAN
discriminator."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def gan_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating GAN loss of a discriminator: softplus(-D(real)) + softplus(D(fake)).

    Shape: logits of any (equal or broadcastable) shape -> scalar."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def gan_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating GAN loss of the generator: softplus(-D(fake)). Shape: any -> scalar."""
    return F.softplus(-fake_logits).mean()


class PatchDiscriminator(nn.Module):
    """A PatchGAN: strided 4x4 convolutions with spectral normalisation, one logit per patch
    (receptive field ~46 px). Inputs are in 0..1.

    Shape: :math:`(B, C, H, W)` -> :math:`(B, 1, H/8, W/8)`.
    """

    def __init__(self, channels: int = 3, width: int = 32):
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm
        layers: list[nn.Module] = []
        c = channels
        for out in (width, width * 2, width * 4):
            layers += [sn(nn.Conv2d(c, out, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
            c = out
        layers.append(sn(nn.Conv2d(c, 1, 3, padding=1)))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1)
