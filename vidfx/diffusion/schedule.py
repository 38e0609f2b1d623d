"""A continuous-time cosine noise schedule and a deterministic DDIM sampler (x0-prediction).

Time ``t`` runs from 0 (clean) to 1 (pure noise); ``x_t = alpha(t) * x0 + sigma(t) * noise``
with ``alpha^2 + sigma^2 = 1``. Denoisers predict ``x0`` directly: with few sampling steps an
x0-predictor degrades gracefully (one step gives the conditional mean), which is what a
CPU-sized model needs, and it is the parametrisation one-step distillation starts from.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

# Keep alpha(1) slightly above 0 and alpha(0) slightly below 1, so both ends stay well defined.
T_MIN, T_MAX = 1e-4, 0.9999


def alpha_sigma(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Signal and noise scales of the cosine schedule at times ``t``.

    Shape:
        - t: any shape, values in [0, 1]
        - output: two tensors shaped like ``t``
    """
    t = t.clamp(T_MIN, T_MAX)
    angle = t * (math.pi / 2)
    return torch.cos(angle), torch.sin(angle)


def add_noise(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """``x_t`` from clean ``x0``: ``alpha(t) x0 + sigma(t) noise``, ``t`` broadcast over the
    leading (batch) dimension.

    Shape:
        - x0, noise: :math:`(B, ...)`
        - t: :math:`(B,)`
        - output: :math:`(B, ...)`
    """
    a, s = alpha_sigma(t)
    view = (-1,) + (1,) * (x0.dim() - 1)
    return a.view(view) * x0 + s.view(view) * noise


Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def sample_times(steps: int) -> list[float]:
    """The ``steps + 1`` times a ``steps``-step sampler visits, from 1 down to 0 (uniform)."""
    if steps < 1:
        raise ValueError(f"a sampler needs at least 1 step, got {steps}")
    return [1.0 - i / steps for i in range(steps + 1)]


Step = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _sample(denoise: Denoiser, noise: torch.Tensor, steps: int, step: Step) -> torch.Tensor:
    """The sampling loop both samplers share: from t = 1 down ``steps`` uniform steps;
    ``step(x_t, x0_hat, t_now, t_next)`` gives the next ``x``. Returns the last x0 prediction."""
    times = sample_times(steps)
    x = x0 = noise
    for t_now, t_next in zip(times[:-1], times[1:], strict=True):
        tt = torch.full((noise.shape[0],), t_now, dtype=noise.dtype, device=noise.device)
        x0 = denoise(x, tt)
        if t_next <= 0:
            break
        x = step(x, x0, tt, torch.full_like(tt, t_next))
    return x0


def _view(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.view((-1,) + (1,) * (like.dim() - 1))


@torch.no_grad()
def ddim_sample(denoise: Denoiser, noise: torch.Tensor, steps: int) -> torch.Tensor:
    """Deterministic DDIM sampling from ``noise`` with ``steps`` denoiser calls.

    ``denoise(x_t, t)`` returns the predicted ``x0``; ``t`` is a (B,) tensor. The same noise
    gives the same sample (what keeps a generated region still from frame to frame).

    Shape:
        - noise: :math:`(B, ...)`
        - output: :math:`(B, ...)`, the last x0 prediction
    """

    def step(x: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor) -> torch.Tensor:
        a, s = (_view(v, x) for v in alpha_sigma(t))
        a2, s2 = (_view(v, x) for v in alpha_sigma(t_next))
        return a2 * x0 + s2 * (x - a * x0) / s

    return _sample(denoise, noise, steps, step)


@torch.no_grad()
def renoise_sample(denoise: Denoiser, noise: torch.Tensor, steps: int, fresh: Sequence[torch.Tensor]) -> torch.Tensor:
    """The multi-step sampler of a DMD2 student: at each of ``steps`` uniform times the x0
    prediction is noised afresh to the next time with ``fresh[i]`` (``steps - 1`` tensors like
    ``noise``; fixed fields keep the samples still from frame to frame). One step is the
    same as :func:`ddim_sample` with one step.

    Shape:
        - noise, fresh[i]: :math:`(B, ...)`
        - output: :math:`(B, ...)`, the last x0 prediction
    """
    if len(fresh) < steps - 1:
        raise ValueError(f"renoise_sample: {steps} steps need {steps - 1} fresh noise tensors, got {len(fresh)}")
    used = iter(fresh)

    def step(x: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor) -> torch.Tensor:
        return add_noise(x0, t_next, next(used))

    return _sample(denoise, noise, steps, step)


def uniform_times(
    batch: int, low: float = 0.02, high: float = 0.98, device: torch.device | str | None = None
) -> torch.Tensor:
    """Training times drawn uniformly from [low, high] (the ends are where x0-prediction is
    trivial or pure guessing, so distillation losses skip them).

    Shape:
        - output: :math:`(B,)`
    """
    return low + (high - low) * torch.rand(batch, device=device)


@torch.no_grad()
def ancestral_sample(
    denoise: Denoiser, noise: torch.Tensor, steps: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Stochastic (DDPM-style ancestral) sampling from ``noise`` with ``steps`` denoiser calls.

    Each step draws ``x_s`` from the Gaussian posterior ``q(x_s | x_t, x0_hat)`` of the cosine
    schedule; fresh noise comes from ``generator`` (the global RNG when None).

    Shape:
        - noise: :math:`(B, ...)`
        - output: :math:`(B, ...)`, the last x0 prediction
    """

    def step(x: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor) -> torch.Tensor:
        a_t, s_t = (_view(v, x) for v in alpha_sigma(t))
        a_s, s_s = (_view(v, x) for v in alpha_sigma(t_next))
        a_ts = a_t / a_s
        var_ts = s_t**2 - a_ts**2 * s_s**2  # variance of x_t given x_s
        mean = (a_ts * s_s**2 / s_t**2) * x + (a_s * var_ts / s_t**2) * x0
        std = (var_ts * s_s**2 / s_t**2).clamp_min(0).sqrt()
        return mean + std * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)

    return _sample(denoise, noise, steps, step)


def seconds_per_call(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` calls after ``warmup`` calls,
    synchronising CUDA around each call when it is in use (benchmarks, not tests)."""
    import statistics
    import time

    def sync() -> None:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()

    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)
