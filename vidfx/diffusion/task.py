"""What the distillation trainers (DMD, DMD2, Diffusion2GAN) need from a diffusion model, and
the pieces they share: the student, the teacher's noise->x0 pair set, and the loss helpers.

Everything uses the cosine schedule and x0-prediction of :mod:`vidfx.diffusion.schedule`; a
denoiser is called as ``net(x_t, t, cond)`` and returns ``x0_hat`` shaped like ``x_t``. The
score it implies is ``(alpha x0_hat - x_t) / sigma^2``, so a difference of two scores at the
same ``x_t`` is ``alpha / sigma^2`` times the difference of their x0 predictions.

A condition ``cond`` is whatever the denoiser takes besides ``x_t`` and ``t``: None, a tensor,
or a dict of tensors, always batch-first (so it can be indexed, concatenated and saved).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from vidfx.diffusion.schedule import add_noise, ddim_sample, sample_times, uniform_times
from vidfx.ops.weights import atomic_save

Cond = Any  # None, a (B, ...) tensor, or a dict of (B, ...) tensors


class DistillTask(Protocol):
    """A frozen teacher and the data around it, as the trainers see them.

    ``shape`` is one sample's shape (the batch dimension excluded).
    """

    shape: tuple[int, ...]

    def teacher(self, x_t: torch.Tensor, t: torch.Tensor, cond: Cond) -> torch.Tensor:
        """Frozen denoiser: x0 prediction. Shape: x_t :math:`(B, *shape)`, t :math:`(B,)` -> like x_t."""
        ...

    def make_fake_score(self) -> nn.Module:
        """A trainable copy of the teacher's denoiser, ``forward(x_t, t, cond, features=False)``;
        with ``features=True`` it returns ``(x0_hat, feats)``, feats :math:`(B, F)` (for the GAN heads)."""
        ...

    def make_generator(self) -> nn.Module:
        """A trainable copy of the teacher's denoiser, ``forward(x_t, t, cond) -> x0``; the
        student calls it at its own times (a one-step student at t=1 on pure noise)."""
        ...

    def sample_cond(self, batch: int) -> Cond:
        """Conditions for a batch (from the training data)."""
        ...

    def sample_real(self, batch: int, cond: Cond) -> torch.Tensor:
        """Real data for ``cond`` (the GAN's real side). Shape: :math:`(B, *shape)`."""
        ...

    def features(self, x0: torch.Tensor, cond: Cond) -> torch.Tensor:
        """Fixed feature network for the perceptual (E-LatentLPIPS-style) distance.
        Shape: :math:`(B, *shape)` -> :math:`(B, F)`."""
        ...

    def random_augment(self, batch: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """One random differentiable augmentation (fixed parameters per sample), to be applied
        identically to a student output and its target. Shape: :math:`(B, *shape)` -> same."""
        ...


# --- conditions -----------------------------------------------------------------------------


def cond_index(cond: Cond, index: torch.Tensor | slice) -> Cond:
    """Rows ``index`` of a condition (None stays None)."""
    if cond is None:
        return None
    if isinstance(cond, dict):
        return {k: v[index] for k, v in cond.items()}
    return cond[index]


def cond_cat(conds: Sequence[Cond]) -> Cond:
    """Concatenate conditions along the batch dimension."""
    if conds[0] is None:
        return None
    if isinstance(conds[0], dict):
        return {k: torch.cat([c[k] for c in conds]) for k in conds[0]}
    return torch.cat(list(conds))


# --- the student ----------------------------------------------------------------------------


class Student(nn.Module):
    """A one- or few-step generator: ``net`` (a copy of the teacher's denoiser) called at the
    student's own times ``times`` (descending, starting at 1.0, 0 excluded). Between steps the
    x0 prediction is re-noised to the next time with fresh noise (DMD2's multi-step sampler).
    """

    def __init__(self, net: nn.Module, times: Sequence[float] = (1.0,)):
        super().__init__()
        if not times or times[0] != 1.0 or any(b >= a for a, b in zip(times[:-1], times[1:])) or times[-1] <= 0:
            raise ValueError(f"student times must descend from 1.0 and stay above 0, got {list(times)}")
        self.net = net
        self.times = [float(t) for t in times]

    @staticmethod
    def uniform(net: nn.Module, steps: int) -> Student:
        """A ``steps``-step student at times 1, 1 - 1/steps, ..., 1/steps."""
        return Student(net, sample_times(steps)[:-1])

    def call(self, x_t: torch.Tensor, index: int, cond: Cond) -> torch.Tensor:
        """The x0 prediction at step ``index`` from ``x_t``. Shape: :math:`(B, *shape)` -> same."""
        t = torch.full((x_t.shape[0],), self.times[index], dtype=x_t.dtype, device=x_t.device)
        return self.net(x_t, t, cond)

    def simulate(
        self, noise: torch.Tensor, cond: Cond, upto: int, renoise: Sequence[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Backward simulation: run the student's own first ``upto`` steps from ``noise`` (no
        gradient) and return ``(x_t at times[upto], the x0 of step upto-1 or None)``.
        ``renoise[i]`` is the fresh noise put on before step ``i + 1`` (drawn when None).

        Shape:
            - noise: :math:`(B, *shape)` standard normal
            - output: :math:`(B, *shape)`, and :math:`(B, *shape)` or None
        """
        x = noise
        x0 = None
        with torch.no_grad():
            for i in range(upto):
                x0 = self.call(x, i, cond)
                fresh = renoise[i] if renoise is not None else torch.randn_like(x0)
                t_next = torch.full((x0.shape[0],), self.times[i + 1], dtype=x0.dtype, device=x0.device)
                x = add_noise(x0, t_next, fresh)
        return x, x0

    def forward(self, noise: torch.Tensor, cond: Cond) -> torch.Tensor:
        """Sample: all steps from pure ``noise`` (with gradient through the last step only).
        Shape: :math:`(B, *shape)` -> :math:`(B, *shape)`."""
        last = len(self.times) - 1
        x, _ = self.simulate(noise, cond, last)
        return self.call(x, last, cond)


# --- the teacher's pair set -----------------------------------------------------------------


class PairSet:
    """Noise -> x0 pairs from the teacher's deterministic DDIM sampler (DMD's regression set,
    Diffusion2GAN's paired data). Built in chunks and saved to ``path`` after each chunk, so an
    interrupted build resumes where it stopped.

    Tensors: ``noise`` and ``x0`` :math:`(N, *shape)`, ``cond`` (N, ...) rows; ``done`` rows are made.
    """

    def __init__(self, noise: torch.Tensor, cond: Cond, x0: torch.Tensor, steps: int, done: int):
        self.noise, self.cond, self.x0, self.steps, self.done = noise, cond, x0, steps, done

    def __len__(self) -> int:
        return self.done

    def save(self, path: str | Path) -> None:
        """Write atomically (``vidfx.ops.weights.atomic_save``)."""
        state = {"noise": self.noise, "cond": self.cond, "x0": self.x0, "steps": self.steps, "done": self.done}
        atomic_save(state, path)

    @staticmethod
    def load(path: str | Path) -> PairSet:
        """Read a file written by :meth:`save`."""
        d = torch.load(path, map_location="cpu", weights_only=True)
        return PairSet(d["noise"], d["cond"], d["x0"], int(d["steps"]), int(d["done"]))

    @staticmethod
    def build(
        task: DistillTask,
        count: int,
        steps: int,
        path: str | Path | None = None,
        chunk: int = 256,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> PairSet:
        """Make (or finish making) ``count`` pairs with ``steps`` DDIM steps of the teacher.

        Noise and conditions are drawn up front from ``seed``, so a resumed build gives the same
        set as an uninterrupted one. An existing file at ``path`` with other ``count``/``steps``
        is an error.
        """
        if path is not None and Path(path).exists():
            pairs = PairSet.load(path)
            if pairs.noise.shape[0] != count or pairs.steps != steps:
                raise ValueError(
                    f"{path}: pair set has {pairs.noise.shape[0]} pairs at {pairs.steps} steps, "
                    f"asked for {count} at {steps}"
                )
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                noise = torch.randn(count, *task.shape)
                cond = task.sample_cond(count)
            pairs = PairSet(noise, cond, torch.zeros_like(noise), steps, 0)
        for start in range(pairs.done, count, chunk):
            end = min(start + chunk, count)
            x0 = ddim_sample(
                _bind_cond(task, cond_to(cond_index(pairs.cond, slice(start, end)), device)),
                pairs.noise[start:end].to(device),
                steps,
            )
            pairs.x0[start:end] = x0.cpu()
            pairs.done = end
            if path is not None:
                pairs.save(path)
        return pairs

    def batch(self, size: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, Cond, torch.Tensor]:
        """A random batch ``(noise, cond, x0)`` of made pairs."""
        idx = torch.randint(0, self.done, (size,))
        return self.noise[idx].to(device), cond_to(cond_index(self.cond, idx), device), self.x0[idx].to(device)


def _bind_cond(task: DistillTask, cond: Cond) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return lambda x, t: task.teacher(x, t, cond)


def cond_to(cond: Cond, device: torch.device | str) -> Cond:
    """A condition moved to ``device``."""
    if cond is None:
        return None
    if isinstance(cond, dict):
        return {k: v.to(device) for k, v in cond.items()}
    return cond.to(device)


# --- losses ---------------------------------------------------------------------------------


def distribution_matching_loss(x: torch.Tensor, real_x0: torch.Tensor, fake_x0: torch.Tensor) -> torch.Tensor:
    """DMD's distribution-matching loss on generator outputs ``x``, whose gradient w.r.t. ``x``
    is ``(fake_x0 - real_x0) / mean|x - real_x0|`` (per sample; the paper's weighting), divided
    by the number of elements. ``real_x0``/``fake_x0`` are the teacher's and the fake score's x0
    predictions at the same noised ``x`` (the score difference up to the alpha/sigma^2 factor
    that the weighting replaces).

    Shape:
        - x, real_x0, fake_x0: :math:`(B, ...)`
        - output: scalar
    """
    dims = tuple(range(1, x.dim()))
    weight = (x - real_x0).abs().mean(dim=dims, keepdim=True).clamp_min(1e-6)
    grad = torch.nan_to_num((fake_x0 - real_x0) / weight).detach()
    return 0.5 * F.mse_loss(x, (x - grad).detach(), reduction="sum") / x.numel()


def optimiser_step(
    opt: torch.optim.Optimizer, loss: torch.Tensor, params: Sequence[nn.Parameter] = (), clip: float = 0.0
) -> None:
    """Backpropagate ``loss`` and step ``opt``, clipping the gradient norm of ``params`` at
    ``clip`` first (0 = no clipping; keeps a generator update from a rare large
    distribution-matching gradient bounded)."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()


def denoising_loss(net: nn.Module, x0: torch.Tensor, cond: Cond, t_low: float, t_high: float) -> torch.Tensor:
    """The diffusion (x0-prediction) loss of ``net`` on clean samples ``x0`` at uniform times.
    Shape: x0 :math:`(B, ...)` -> scalar."""
    t = uniform_times(x0.shape[0], t_low, t_high, device=x0.device)
    x_t = add_noise(x0, t, torch.randn_like(x0))
    return F.mse_loss(net(x_t, t, cond), x0)


class FeatureHead(nn.Module):
    """A small MLP from a feature vector to one logit (the GAN heads on diffusion features).
    Shape: :math:`(B, F)` -> :math:`(B,)`."""

    def __init__(self, features: int, hidden: int = 128):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(features, hidden), nn.SiLU(), nn.Linear(hidden, 1))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.mlp(feats.flatten(1)).squeeze(-1)


def feature_size(net: nn.Module, task: DistillTask, device: torch.device | str) -> int:
    """The length of ``net(x_t, t, cond, features=True)``'s feature vector (one probe call)."""
    cond = cond_to(task.sample_cond(2), device)
    x = torch.zeros(2, *task.shape, device=device)
    with torch.no_grad():
        _, feats = net(x, torch.full((2,), 0.5, device=device), cond, features=True)
    return int(feats.flatten(1).shape[1])
