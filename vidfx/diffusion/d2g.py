"""Diffusion2GAN (Kang et al. 2024): distillation as paired noise->image translation.

A one-step student regresses the teacher's DDIM noise->x0 pairs (:class:`~vidfx.diffusion.task.PairSet`)
with an E-LatentLPIPS-style distance (:func:`e_latent_distance`: a feature distance in the
task's fixed feature network, averaged over an ensemble of random differentiable
augmentations applied identically to both sides), plus a conditional GAN whose discriminator
is built from the diffusion model itself (:class:`DiffusionDiscriminator`: a trainable copy of
the teacher's denoiser read at several noise levels, one head per level). The GAN's real side
is the teacher's pair outputs, as in the paper.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from vidfx.diffusion.schedule import add_noise
from vidfx.diffusion.task import (
    Cond,
    DistillTask,
    FeatureHead,
    PairSet,
    Student,
    feature_size,
    optimiser_step,
)
from vidfx.ops.gan import gan_d_loss, gan_g_loss


def e_latent_distance(task: DistillTask, x: torch.Tensor, y: torch.Tensor, cond: Cond, ensemble: int) -> torch.Tensor:
    """E-LatentLPIPS-style distance: the mean over ``ensemble`` random augmentations (the same
    one on both sides) of the squared feature distance ``|f(aug x) - f(aug y)|^2`` in the task's
    feature network ``f`` (summed over features, averaged over the batch).

    Shape:
        - x, y: :math:`(B, *shape)`; ``y`` is the target (no gradient needed)
        - output: scalar
    """
    total = x.new_zeros(())
    for _ in range(ensemble):
        aug = task.random_augment(x.shape[0])
        fx = task.features(aug(x), cond)
        with torch.no_grad():
            fy = task.features(aug(y), cond)
        total = total + (fx - fy).pow(2).flatten(1).sum(1).mean()
    return total / ensemble


class DiffusionDiscriminator(nn.Module):
    """Conditional discriminator from the diffusion model: ``backbone`` (a trainable copy of the
    teacher's denoiser with ``features=True``) reads the sample noised to each of ``times`` (fresh
    noise per call; the noise levels play the part of the paper's feature scales), and one head
    per time gives a logit; the logits are summed. The condition enters through the backbone.

    Shape: x0 :math:`(B, *shape)` -> :math:`(B,)`.
    """

    def __init__(self, backbone: nn.Module, features: int, times: Sequence[float], hidden: int = 128):
        super().__init__()
        self.backbone = backbone
        self.times = [float(t) for t in times]
        self.heads = nn.ModuleList(FeatureHead(features, hidden) for _ in self.times)

    def forward(self, x0: torch.Tensor, cond: Cond) -> torch.Tensor:
        logits = x0.new_zeros(x0.shape[0])
        for t_value, head in zip(self.times, self.heads, strict=True):
            t = torch.full((x0.shape[0],), t_value, dtype=x0.dtype, device=x0.device)
            _, feats = self.backbone(add_noise(x0, t, torch.randn_like(x0)), t, cond, features=True)
            logits = logits + head(feats)
        return logits


@dataclass
class D2GConfig:
    """Settings of :class:`D2GTrainer`."""

    batch: int = 64
    lr_generator: float = 1e-4
    lr_discriminator: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.999)
    ensemble: int = 4  # augmentations averaged per distance evaluation
    gan_weight: float = 0.05  # generator's GAN loss weight (the regression loss has weight 1)
    disc_times: tuple[float, ...] = field(default_factory=lambda: (0.1, 0.4, 0.7))  # "scales" of the discriminator
    head_hidden: int = 128
    grad_clip: float = 1.0  # generator gradient norm limit (0 = none)
    device: str = "cpu"


class D2GTrainer:
    """Diffusion2GAN: a one-step student ``net(z, t=1, cond)`` initialised from the teacher,
    trained on the pair set with :func:`e_latent_distance` plus ``gan_weight`` times the
    non-saturating GAN loss of :class:`DiffusionDiscriminator`."""

    def __init__(self, task: DistillTask, pairs: PairSet, config: D2GConfig | None = None):
        self.config = c = config or D2GConfig()
        self.task, self.pairs, self.device = task, pairs, c.device
        self.student = Student(task.make_generator()).to(c.device)
        backbone = task.make_fake_score().to(c.device)
        feats = feature_size(backbone, task, c.device)
        self.discriminator = DiffusionDiscriminator(backbone, feats, c.disc_times, c.head_hidden).to(c.device)
        self.opt_generator = torch.optim.Adam(self.student.parameters(), lr=c.lr_generator, betas=c.betas)
        self.opt_discriminator = torch.optim.Adam(self.discriminator.parameters(), lr=c.lr_discriminator, betas=c.betas)
        self.steps_done = 0

    def step(self) -> dict[str, float]:
        """One discriminator update, then one generator update; returns the losses."""
        c = self.config
        noise, cond, target = self.pairs.batch(c.batch, self.device)
        with torch.no_grad():
            fake = self.student(noise, cond)
        loss_d = gan_d_loss(self.discriminator(target, cond), self.discriminator(fake, cond))
        optimiser_step(self.opt_discriminator, loss_d)

        x = self.student(noise, cond)
        loss_reg = e_latent_distance(self.task, x, target, cond, c.ensemble)
        loss_g = gan_g_loss(self.discriminator(x, cond))
        loss = loss_reg + c.gan_weight * loss_g
        optimiser_step(self.opt_generator, loss, list(self.student.parameters()), c.grad_clip)
        self.steps_done += 1
        return {"regression": loss_reg.item(), "gan_g": loss_g.item(), "gan_d": loss_d.item()}

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs (modules, optimisers, step count)."""
        return {
            "student": self.student.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "opt_generator": self.opt_generator.state_dict(),
            "opt_discriminator": self.opt_discriminator.state_dict(),
            "steps_done": self.steps_done,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""
        self.student.load_state_dict(state["student"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.opt_generator.load_state_dict(state["opt_generator"])
        self.opt_discriminator.load_state_dict(state["opt_discriminator"])
        self.steps_done = int(state["steps_done"])
