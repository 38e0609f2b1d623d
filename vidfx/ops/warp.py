"""Backward warping by a dense flow field: sample an image at p + flow(p) for every pixel p.

One implementation (``torch.nn.functional.grid_sample``, differentiable, used inside the VSR
network); :func:`backward_warp_np` is the same warp for numpy images in (H, W, C) layout.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def backward_warp(x: torch.Tensor, flow: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Sample ``x`` at ``p + flow(p)``; ``flow`` is in pixels (dx, dy).

    ``mode`` is ``bilinear`` or ``nearest``; samples outside the image take the nearest edge
    pixel. With ``flow`` from frame a to frame b, warping b gives it in a's geometry.

    Shape:
        - x: :math:`(N, C, H, W)` float
        - flow: :math:`(N, 2, H, W)`
        - output: :math:`(N, C, H, W)`
    """
    n, _, h, w = x.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, device=x.device, dtype=x.dtype), torch.arange(w, device=x.device, dtype=x.dtype), indexing="ij"
    )
    gx = (xs + flow[:, 0].to(x.dtype)) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys + flow[:, 1].to(x.dtype)) * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack((gx, gy), dim=-1)
    return F.grid_sample(x, grid, mode=mode, padding_mode="border", align_corners=True)


def backward_warp_np(image: np.ndarray, flow: np.ndarray, mode: str = "bilinear") -> np.ndarray:
    """:func:`backward_warp` for one numpy image (float32 out).

    Shape:
        - image: :math:`(H, W, C)` or :math:`(H, W)`
        - flow: :math:`(H, W, 2)`
        - output: float32, same shape as ``image``
    """
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    x = x[None, None] if x.dim() == 2 else x.permute(2, 0, 1)[None]
    f = torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32)).permute(2, 0, 1)[None]
    out = backward_warp(x, f, mode)[0]
    return out[0].numpy() if image.ndim == 2 else np.ascontiguousarray(out.permute(1, 2, 0).numpy())
