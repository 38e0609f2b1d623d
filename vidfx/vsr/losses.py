"""Losses: Charbonnier (fidelity), a patch discriminator with the non-saturating GAN loss
and R1 penalty, and discriminator feature matching.

Feature matching stands in for LPIPS (the paper uses LPIPS, whose backbone weights cannot
be downloaded here): L1 between the discriminator's intermediate features of the output
and of the ground truth, a perceptual distance measured by a network we train ourselves.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def charbonnier(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """mean(sqrt((x - y)^2 + eps^2)): a smooth L1."""
    return torch.sqrt((x - y) ** 2 + eps * eps).mean()


class PatchDiscriminator(nn.Module):
    """A small conv discriminator on single HR frames, returning patch logits and the
    intermediate features (for feature matching). Spectral norm keeps it tame."""

    def __init__(self, channels: int = 32):
        super().__init__()
        sn = nn.utils.spectral_norm
        c = channels
        self.layers = nn.ModuleList(
            [
                sn(nn.Conv2d(3, c, 3, padding=1)),
                sn(nn.Conv2d(c, 2 * c, 4, stride=2, padding=1)),
                sn(nn.Conv2d(2 * c, 4 * c, 4, stride=2, padding=1)),
                sn(nn.Conv2d(4 * c, 4 * c, 4, stride=2, padding=1)),
            ]
        )
        self.head = nn.Conv2d(4 * c, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = []
        for layer in self.layers:
            x = F.leaky_relu(layer(x), 0.2)
            feats.append(x)
        return self.head(x), feats


def r1_penalty(disc: nn.Module, real: torch.Tensor) -> torch.Tensor:
    """R1: 0.5 * E ||grad_x D(x)||^2 on real images (multiply by gamma outside)."""
    real = real.detach().requires_grad_(True)
    logits, _ = disc(real)
    (grad,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
    return 0.5 * grad.pow(2).flatten(1).sum(1).mean()


def feature_matching(fake_feats: list[torch.Tensor], real_feats: list[torch.Tensor]) -> torch.Tensor:
    """Mean L1 between discriminator features of output and ground truth (LPIPS stand-in)."""
    return sum(F.l1_loss(f, r.detach()) for f, r in zip(fake_feats, real_feats)) / len(fake_feats)
