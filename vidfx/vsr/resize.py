"""MATLAB-compatible bicubic ``imresize`` (antialiased when shrinking), the standard
degradation of SR benchmarks ("BI"): the shared resampler (``vidfx.nodes.resample``) with
Keys' cubic (a=-0.5) and mirror boundaries, plus MATLAB's output-size rule."""
from __future__ import annotations

import math

import numpy as np
import torch

from vidfx.nodes.resample import resample_matrix


def _matrix(n_in: int, n_out: int, antialias: bool = True) -> torch.Tensor:
    """The (n_out, n_in) matrix of MATLAB's ``imresize(..., 'bicubic')`` along one axis."""
    return resample_matrix(n_in, n_out, "bicubic", antialias, "mirror").float()


def _output_size(h: int, w: int, scale: float | None, size: tuple[int, int] | None) -> tuple[int, int]:
    if size is not None:
        return size
    if scale is None:
        raise ValueError("give scale or size")
    return int(math.ceil(h * scale)), int(math.ceil(w * scale))


def imresize(x: torch.Tensor, scale: float | None = None, size: tuple[int, int] | None = None,
             antialias: bool = True) -> torch.Tensor:
    """Resize the last two dims of ``x`` like MATLAB ``imresize(x, scale, 'bicubic')``.

    Give ``scale`` (output = ceil(input * scale)) or ``size`` = (H, W). No clamping.
    """
    h, w = x.shape[-2:]
    out_h, out_w = _output_size(h, w, scale, size)
    mh = _matrix(h, out_h, antialias).to(x.device)
    mw = _matrix(w, out_w, antialias).to(x.device)
    return torch.matmul(torch.matmul(mh, x.float()), mw.T)


def imresize_np(img: np.ndarray, scale: float | None = None, size: tuple[int, int] | None = None) -> np.ndarray:
    """:func:`imresize` for an (H, W, C) or (H, W) float numpy image."""
    h, w = img.shape[:2]
    out_h, out_w = _output_size(h, w, scale, size)
    mh = _matrix(h, out_h).numpy()
    mw = _matrix(w, out_w).numpy()
    img = np.asarray(img, dtype=np.float32)
    if img.ndim == 3:
        return np.einsum("oh,hwc,pw->opc", mh, img, mw, optimize=True)
    return mh @ img @ mw.T
