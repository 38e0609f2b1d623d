"""Separable image resampling on tensors: bicubic, Lanczos-3, area and bilinear, antialiased,
plus MATLAB-compatible bicubic ``imresize`` (the "BI" degradation of SR benchmarks).

Down-scaling widens the kernel by the scale factor (as MATLAB's ``imresize`` does), so a
down-scale filters out what the smaller image cannot hold instead of aliasing it.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

KERNELS = ("bicubic", "lanczos", "area", "bilinear")
BOUNDARIES = ("replicate", "mirror")


def _cubic(x: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    ax = x.abs()
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (a + 2) * ax3 - (a + 3) * ax2 + 1
    far = a * ax3 - 5 * a * ax2 + 8 * a * ax - 4 * a
    return torch.where(ax <= 1, near, torch.where(ax < 2, far, torch.zeros_like(ax)))


def _lanczos3(x: torch.Tensor) -> torch.Tensor:
    ax = x.abs()
    out = torch.sinc(x) * torch.sinc(x / 3)
    return torch.where(ax < 3, out, torch.zeros_like(out))


def _linear(x: torch.Tensor) -> torch.Tensor:
    return (1 - x.abs()).clamp(min=0)


def _box(x: torch.Tensor) -> torch.Tensor:
    return ((x > -0.5) & (x <= 0.5)).to(x.dtype)


_KERNEL_FN = {"bicubic": (_cubic, 2.0), "lanczos": (_lanczos3, 3.0), "bilinear": (_linear, 1.0), "area": (_box, 0.5)}


def resample_weights(
    in_size: int,
    out_size: int,
    kernel: str,
    antialias: bool = True,
    boundary: str = "replicate",
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tap indices and weights mapping ``in_size`` samples to ``out_size``.

    Taps outside the image take the border sample (``replicate``) or its mirror image
    (``mirror``, MATLAB's ``imresize``); weights of each output sum to one.

    Shape:
        - output: indices (int64) and weights, both :math:`(out\\_size, taps)`
    """
    fn, support = _KERNEL_FN[kernel]
    scale = out_size / in_size
    stretch = 1.0 / scale if (antialias and scale < 1) else 1.0
    centers = (torch.arange(out_size, dtype=dtype) + 0.5) / scale - 0.5
    taps = int(math.ceil(support * stretch)) * 2 + 3
    first = torch.floor(centers - support * stretch).long()
    idx = first[:, None] + torch.arange(taps)[None, :]
    weights = fn((centers[:, None] - idx.to(dtype)) / stretch)
    weights = weights / weights.sum(dim=1, keepdim=True).clamp(min=1e-12)
    if boundary == "mirror":
        period = torch.cat([torch.arange(in_size), torch.arange(in_size - 1, -1, -1)])
        return period[idx % (2 * in_size)], weights
    return idx.clamp(0, in_size - 1), weights


@functools.lru_cache(maxsize=64)
def resample_matrix(
    in_size: int, out_size: int, kernel: str, antialias: bool = True, boundary: str = "replicate"
) -> torch.Tensor:
    """The float64 matrix that applies the resampling along one axis.

    A banded matrix applied with one matrix product is much faster on CPU than gathering
    taps, and the same on GPU.

    Shape:
        - output: :math:`(out\\_size, in\\_size)`
    """
    idx, w = resample_weights(in_size, out_size, kernel, antialias, boundary)
    matrix = torch.zeros(out_size, in_size, dtype=w.dtype)
    matrix.scatter_add_(1, idx, w)
    return matrix


def _resample_axis(
    x: torch.Tensor, out_size: int, dim: int, kernel: str, antialias: bool, boundary: str
) -> torch.Tensor:
    in_size = x.shape[dim]
    if in_size == out_size:
        return x
    m = resample_matrix(in_size, out_size, kernel, antialias, boundary).to(device=x.device, dtype=x.dtype)
    x = x.movedim(dim, -1)
    out = x @ m.T
    return out.movedim(-1, dim)


def resize(
    x: torch.Tensor,
    height: int,
    width: int,
    kernel: str = "bicubic",
    antialias: bool = True,
    boundary: str = "replicate",
) -> torch.Tensor:
    """Resize to (height, width) with a separable kernel.

    ``bicubic`` is Keys' cubic with a=-0.5 (MATLAB's ``imresize``), ``lanczos`` is
    Lanczos-3, ``area`` averages the covered input pixels, ``bilinear`` is a tent.

    Shape:
        - x: :math:`(*, H, W)` float
        - output: :math:`(*, height, width)`
    """
    if kernel not in _KERNEL_FN:
        raise ValueError(f"unknown kernel {kernel!r}; valid: {', '.join(KERNELS)}")
    out = _resample_axis(x, height, x.dim() - 2, kernel, antialias, boundary)
    return _resample_axis(out, width, x.dim() - 1, kernel, antialias, boundary)


def _matlab_size(h: int, w: int, scale: float | None, size: tuple[int, int] | None) -> tuple[int, int]:
    if size is not None:
        return size
    if scale is None:
        raise ValueError("give scale or size")
    return int(math.ceil(h * scale)), int(math.ceil(w * scale))


def imresize(
    x: torch.Tensor, scale: float | None = None, size: tuple[int, int] | None = None, antialias: bool = True
) -> torch.Tensor:
    """Resize like MATLAB ``imresize(x, scale, 'bicubic')``: Keys' cubic, mirror boundaries,
    antialiased when shrinking, computed in float32. No clamping.

    Give ``scale`` (output = ceil(input * scale)) or ``size`` = (H', W').

    Shape:
        - x: :math:`(*, H, W)`
        - output: :math:`(*, H', W')` float32
    """
    h, w = x.shape[-2:]
    out_h, out_w = _matlab_size(h, w, scale, size)
    return resize(x.float(), out_h, out_w, "bicubic", antialias, "mirror")


def imresize_np(img: np.ndarray, scale: float | None = None, size: tuple[int, int] | None = None) -> np.ndarray:
    """:func:`imresize` for a numpy image.

    Shape:
        - img: :math:`(H, W, C)` or :math:`(H, W)` float
        - output: :math:`(H', W', C)` or :math:`(H', W')` float32
    """
    x = torch.from_numpy(np.asarray(img, dtype=np.float32))
    if x.dim() == 3:
        return imresize(x.movedim(-1, 0), scale, size).movedim(0, -1).contiguous().numpy()
    return imresize(x, scale, size).numpy()
