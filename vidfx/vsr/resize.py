"""MATLAB-compatible bicubic ``imresize`` (antialiased when shrinking), the standard
degradation of SR benchmarks ("BI"). Separable: one weight matrix per axis."""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


@lru_cache(maxsize=64)
def resize_matrix(n_in: int, n_out: int, antialias: bool = True) -> np.ndarray:
    """The (n_out, n_in) matrix of MATLAB's ``imresize(..., 'bicubic')`` along one axis,
    with symmetric (mirror) boundary handling."""
    scale = n_out / n_in
    width = 4.0
    kernel = _cubic
    if scale < 1 and antialias:
        width = 4.0 / scale
        kernel = lambda x: scale * _cubic(scale * x)  # noqa: E731
    out = np.arange(1, n_out + 1, dtype=np.float64)
    u = out / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]  # 1-based source indices
    weights = kernel(u[:, None] - idx)
    weights /= weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(n_in), np.arange(n_in - 1, -1, -1)])
    src = mirror[np.mod(idx.astype(np.int64) - 1, 2 * n_in)]
    mat = np.zeros((n_out, n_in))
    np.add.at(mat, (np.repeat(np.arange(n_out), taps), src.ravel()), weights.ravel())
    return mat


def imresize(x: torch.Tensor, scale: float | None = None, size: tuple[int, int] | None = None,
             antialias: bool = True) -> torch.Tensor:
    """Resize the last two dims of ``x`` like MATLAB ``imresize(x, scale, 'bicubic')``.

    Give ``scale`` (output = ceil(input * scale)) or ``size`` = (H, W). No clamping.
    """
    h, w = x.shape[-2:]
    if size is None:
        if scale is None:
            raise ValueError("give scale or size")
        size = (int(math.ceil(h * scale)), int(math.ceil(w * scale)))
    mh = torch.from_numpy(resize_matrix(h, size[0], antialias)).to(x.device, torch.float32)
    mw = torch.from_numpy(resize_matrix(w, size[1], antialias)).to(x.device, torch.float32)
    return torch.matmul(torch.matmul(mh, x.float()), mw.T)


def imresize_np(img: np.ndarray, scale: float | None = None, size: tuple[int, int] | None = None) -> np.ndarray:
    """:func:`imresize` for an (H, W, C) or (H, W) float numpy image."""
    h, w = img.shape[:2]
    if size is None:
        if scale is None:
            raise ValueError("give scale or size")
        size = (int(math.ceil(h * scale)), int(math.ceil(w * scale)))
    mh = resize_matrix(h, size[0]).astype(np.float32)
    mw = resize_matrix(w, size[1]).astype(np.float32)
    img = np.asarray(img, dtype=np.float32)
    if img.ndim == 3:
        return np.einsum("oh,hwc,pw->opc", mh, img, mw, optimize=True)
    return mh @ img @ mw.T
