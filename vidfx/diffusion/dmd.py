"""Distribution Matching Distillation: DMD (Yin et al. 2024) and DMD2 (Yin et al. 2024b).

Both train a student generator so that its output distribution matches the teacher's. The
generator's outputs ``x`` are noised to a random time; the frozen teacher (the *real* score)
and a *fake* score, a copy of the teacher trained online on the generator's outputs, each
predict x0 there, and ``x`` is pushed along ``real_x0 - fake_x0`` (the gradient of the KL
between the two noised distributions, :func:`~vidfx.diffusion.task.distribution_matching_loss`).

- :class:`DMDTrainer`: one-step student, one fake-score update per generator update, plus a
  regression loss on the teacher's DDIM noise->x0 pairs (:class:`~vidfx.diffusion.task.PairSet`).
- :class:`DMD2Trainer`: no regression; ``fake_updates`` fake-score updates per generator update
  (the two-time-scale rule); a GAN whose discriminator is a head on the fake-score network's
  features, comparing noised real data with noised generated samples; and N-step students
  trained with backward simulation (their own intermediate samples as inputs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vidfx.diffusion.schedule import add_noise, uniform_times
from vidfx.diffusion.task import (
    Cond,
    DistillTask,
    FeatureHead,
    PairSet,
    Student,
    cond_to,
    denoising_loss,
    distribution_matching_loss,
    feature_size,
    optimiser_step,
)
from vidfx.ops.gan import gan_d_loss, gan_g_loss


@dataclass
class DMDConfig:
    """Settings of :class:`DMDTrainer` (the paper's values are for SD-sized models; the
    learning rates here suit small models)."""

    batch: int = 64
    lr_generator: float = 1e-4
    lr_fake: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    regression_weight: float = 0.25  # the paper's lambda_reg
    regression_batch: int | None = None  # pairs per step (``batch`` when None)
    t_low: float = 0.02  # times for the distribution-matching and fake-score losses
    t_high: float = 0.98
    grad_clip: float = 1.0  # generator gradient norm limit (0 = none)
    device: str = "cpu"


@dataclass
class DMD2Config:
    """Settings of :class:`DMD2Trainer`."""

    batch: int = 64
    lr_generator: float = 1e-4
    lr_fake: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    fake_updates: int = 5  # TTUR: fake-score (and GAN head) updates per generator update
    student_steps: int = 1  # 1: one-step; N: the N-step student at times 1, 1-1/N, ...
    gan_g_weight: float = 3e-3  # generator's GAN loss weight
    gan_d_weight: float = 1e-2  # discriminator loss weight inside the fake-score update
    head_hidden: int = 128
    t_low: float = 0.02
    t_high: float = 0.98
    grad_clip: float = 1.0  # generator gradient norm limit (0 = none)
    device: str = "cpu"


class _DistributionMatching:
    """What DMD and DMD2 share: student, fake score, optimisers, the two updates' cores."""

    def __init__(
        self,
        task: DistillTask,
        student: Student,
        lr_generator: float,
        lr_fake: float,
        betas: tuple[float, float],
        device: str,
    ):
        self.task = task
        self.device = device
        self.student = student.to(device)
        self.fake = task.make_fake_score().to(device)
        self.opt_generator = torch.optim.Adam(self.student.parameters(), lr=lr_generator, betas=betas)
        self.extra: nn.ModuleDict = nn.ModuleDict()  # trainable parts updated with the fake score
        self.lr_fake, self.betas = lr_fake, betas
        self.opt_fake: torch.optim.Optimizer = torch.optim.Adam(self.fake.parameters(), lr=lr_fake, betas=betas)
        self.steps_done = 0

    def _fake_optimiser(self) -> None:
        params = list(self.fake.parameters()) + list(self.extra.parameters())
        self.opt_fake = torch.optim.Adam(params, lr=self.lr_fake, betas=self.betas)

    def _noise_cond(self, batch: int) -> tuple[torch.Tensor, Cond]:
        cond = cond_to(self.task.sample_cond(batch), self.device)
        return torch.randn(batch, *self.task.shape, device=self.device), cond

    def _dm_loss(self, x: torch.Tensor, cond: Cond, t_low: float, t_high: float) -> torch.Tensor:
        """Distribution-matching loss of generator outputs ``x`` :math:`(B, *shape)`."""
        t = uniform_times(x.shape[0], t_low, t_high, device=x.device)
        with torch.no_grad():
            x_t = add_noise(x, t, torch.randn_like(x))
            real_x0 = self.task.teacher(x_t, t, cond)
            fake_x0 = self.fake(x_t, t, cond)
        return distribution_matching_loss(x, real_x0, fake_x0)

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs (modules, optimisers, step count)."""
        return {
            "student": self.student.state_dict(),
            "fake": self.fake.state_dict(),
            "extra": self.extra.state_dict(),
            "opt_generator": self.opt_generator.state_dict(),
            "opt_fake": self.opt_fake.state_dict(),
            "steps_done": self.steps_done,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""
        self.student.load_state_dict(state["student"])
        self.fake.load_state_dict(state["fake"])
        self.extra.load_state_dict(state["extra"])
        self.opt_generator.load_state_dict(state["opt_generator"])
        self.opt_fake.load_state_dict(state["opt_fake"])
        self.steps_done = int(state["steps_done"])


class DMDTrainer(_DistributionMatching):
    """DMD: one-step student ``net(z, t=1, cond)`` initialised from the teacher, trained with the
    distribution-matching loss plus ``regression_weight`` times the MSE to the teacher's DDIM
    output for the same noise (``pairs``); the fake score takes one denoising step per step on
    detached generator outputs."""

    def __init__(self, task: DistillTask, pairs: PairSet, config: DMDConfig | None = None):
        self.config = config or DMDConfig()
        c = self.config
        super().__init__(task, Student(task.make_generator()), c.lr_generator, c.lr_fake, c.betas, c.device)
        self.pairs = pairs

    def step(self) -> dict[str, float]:
        """One generator update and one fake-score update; returns the losses."""
        c = self.config
        noise, cond = self._noise_cond(c.batch)
        x = self.student(noise, cond)
        loss_dm = self._dm_loss(x, cond, c.t_low, c.t_high)
        pair_noise, pair_cond, pair_x0 = self.pairs.batch(c.regression_batch or c.batch, self.device)
        loss_reg = F.mse_loss(self.student(pair_noise, pair_cond), pair_x0)
        loss = loss_dm + c.regression_weight * loss_reg
        optimiser_step(self.opt_generator, loss, list(self.student.parameters()), c.grad_clip)

        loss_fake = denoising_loss(self.fake, x.detach(), cond, c.t_low, c.t_high)
        optimiser_step(self.opt_fake, loss_fake)
        self.steps_done += 1
        return {"dm": loss_dm.item(), "regression": loss_reg.item(), "fake": loss_fake.item()}


class DMD2Trainer(_DistributionMatching):
    """DMD2: distribution matching without regression, TTUR, a GAN head on the fake score's
    features trained against real data, and N-step students with backward simulation.

    After each :meth:`step`, ``last_backward`` holds the generator update's backward simulation:
    ``index`` (the student step trained), ``noise``, ``renoise``, ``x0_prev`` (the student's own
    x0 at the step before, None at index 0) and ``x_t`` (the input the trained step received).
    """

    def __init__(self, task: DistillTask, config: DMD2Config | None = None):
        self.config = config or DMD2Config()
        c = self.config
        student = Student.uniform(task.make_generator(), c.student_steps)
        super().__init__(task, student, c.lr_generator, c.lr_fake, c.betas, c.device)
        self.head = FeatureHead(feature_size(self.fake, task, c.device), c.head_hidden).to(c.device)
        self.extra["head"] = self.head
        self._fake_optimiser()
        self.last_backward: dict[str, Any] = {}

    def discriminate(self, x0: torch.Tensor, cond: Cond, t: torch.Tensor) -> torch.Tensor:
        """GAN logits of clean samples ``x0`` noised to ``t`` (the head on the fake score's
        features). Shape: x0 :math:`(B, *shape)`, t :math:`(B,)` -> :math:`(B,)`."""
        x_t = add_noise(x0, t, torch.randn_like(x0))
        _, feats = self.fake(x_t, t, cond, features=True)
        return self.head(feats)

    def _generate(self, batch: int, grad: bool) -> tuple[torch.Tensor, Cond, dict[str, Any]]:
        """Student output at a random step of its own chain (backward simulation)."""
        noise, cond = self._noise_cond(batch)
        index = int(torch.randint(0, len(self.student.times), ()).item())
        renoise = [torch.randn_like(noise) for _ in range(index)]
        x_t, x0_prev = self.student.simulate(noise, cond, index, renoise)
        with torch.set_grad_enabled(grad):
            x = self.student.call(x_t, index, cond)
        info = {"index": index, "noise": noise, "renoise": renoise, "x0_prev": x0_prev, "x_t": x_t}
        return x, cond, info

    def step(self) -> dict[str, float]:
        """``fake_updates`` fake-score/GAN-head updates, then one generator update."""
        c = self.config
        fake_losses, d_losses = [], []
        for _ in range(c.fake_updates):
            x, cond, _ = self._generate(c.batch, grad=False)
            loss_fake = denoising_loss(self.fake, x, cond, c.t_low, c.t_high)
            real = self.task.sample_real(c.batch, cond).to(self.device)
            t = uniform_times(c.batch, c.t_low, c.t_high, device=self.device)
            loss_d = gan_d_loss(self.discriminate(real, cond, t), self.discriminate(x, cond, t))
            optimiser_step(self.opt_fake, loss_fake + c.gan_d_weight * loss_d)
            fake_losses.append(loss_fake.item())
            d_losses.append(loss_d.item())

        x, cond, self.last_backward = self._generate(c.batch, grad=True)
        loss_dm = self._dm_loss(x, cond, c.t_low, c.t_high)
        t = uniform_times(c.batch, c.t_low, c.t_high, device=self.device)
        loss_g = gan_g_loss(self.discriminate(x, cond, t))
        loss = loss_dm + c.gan_g_weight * loss_g
        optimiser_step(self.opt_generator, loss, list(self.student.parameters()), c.grad_clip)
        self.steps_done += 1
        return {
            "dm": loss_dm.item(),
            "gan_g": loss_g.item(),
            "gan_d": sum(d_losses) / len(d_losses),
            "fake": sum(fake_losses) / len(fake_losses),
        }
