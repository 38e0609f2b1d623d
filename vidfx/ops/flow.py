"""Dense optical flow: one wrapper around OpenCV's DIS (``cv2.DISOpticalFlow``) with named presets."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from .colour import grey_u8
from .warp import backward_warp_np

PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
MIN_SIDE = 8  # DIS needs a few patches; smaller pictures get zero flow


class DISFlow:
    """DIS optical flow with a preset (``ultrafast``, ``fast`` or ``medium``).

    ``flow(a, b)[y, x]`` is the displacement (dx, dy) that takes pixel (x, y) of ``a`` to its
    match in ``b``, so ``a(p) ~ b(p + flow(p))``. Pictures may be 8-bit grey arrays or RGB
    (they go through :func:`vidfx.ops.colour.grey_u8`).
    """

    def __init__(self, preset: str = "fast"):
        if preset not in PRESETS:
            raise ValueError(f"unknown DIS preset {preset!r}; valid: {', '.join(PRESETS)}")
        self.preset = preset
        self.dis = cv2.DISOpticalFlow_create(PRESETS[preset])  # type: ignore[attr-defined]  # missing from the stubs

    def __call__(self, a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> np.ndarray:
        """Flow from ``a`` to ``b``.

        Shape:
            - a, b: uint8 array :math:`(H, W)`, array :math:`(H, W, C)` or tensor :math:`(C, H, W)`
            - output: float32 array :math:`(H, W, 2)`
        """
        a, b = grey_u8(a), grey_u8(b)
        h, w = a.shape
        if min(h, w) < MIN_SIDE:
            return np.zeros((h, w, 2), np.float32)
        return self.dis.calc(a, b, None)

    def clip(self, frames: Sequence[torch.Tensor | np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(flow_prev, flow_next)`` of a clip: ``flow_prev[t]`` maps frame t to t-1,
        ``flow_next[t]`` maps t to t+1 (zeros where the neighbour does not exist).

        Shape:
            - frames: T pictures as for :meth:`__call__`
            - output: two float32 tensors :math:`(T, 2, H, W)`
        """
        greys = [grey_u8(f) for f in frames]
        t = len(greys)
        h, w = greys[0].shape
        prev = np.zeros((t, 2, h, w), np.float32)
        nxt = np.zeros((t, 2, h, w), np.float32)
        for i in range(t - 1):
            nxt[i] = self(greys[i], greys[i + 1]).transpose(2, 0, 1)
            prev[i + 1] = self(greys[i + 1], greys[i]).transpose(2, 0, 1)
        return torch.from_numpy(prev), torch.from_numpy(nxt)


def consistent_mask(flow_back: np.ndarray, flow_fwd: np.ndarray, alpha: float = 0.05, beta: float = 1.0) -> np.ndarray:
    """(H, W) bool: where following the backward flow and then the forward flow returns
    (nearly) to the start; False marks occlusions and flow failures.

    ``flow_back`` maps the current frame to the previous one, ``flow_fwd`` the previous to
    the current. Tolerance: |b + f(p+b)|^2 < alpha (|b|^2 + |f(p+b)|^2) + beta (pixels^2).
    """
    fwd_at = backward_warp_np(flow_fwd, flow_back)
    err = np.sum((flow_back + fwd_at) ** 2, axis=-1)
    tol = alpha * (np.sum(flow_back**2, -1) + np.sum(fwd_at**2, -1)) + beta
    h, w = flow_back.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    tx, ty = gx + flow_back[..., 0], gy + flow_back[..., 1]
    inside = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    return (err < tol) & inside
