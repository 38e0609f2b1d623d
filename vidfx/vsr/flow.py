"""Optical flow between neighbouring LR frames with OpenCV's DIS (no learned weights)."""
from __future__ import annotations

import cv2
import numpy as np
import torch

_PRESET = cv2.DISOPTICAL_FLOW_PRESET_FAST


def _gray_u8(frame: torch.Tensor | np.ndarray) -> np.ndarray:
    """(3, H, W) float tensor in 0..1, or (H, W, 3) array -> (H, W) uint8 luma (BT.601)."""
    if isinstance(frame, torch.Tensor):
        a = frame.detach().float().clamp(0, 1).cpu().numpy()
        y = 0.299 * a[0] + 0.587 * a[1] + 0.114 * a[2]
    else:
        a = frame.astype(np.float32)
        if a.max() > 1.5:
            a = a / 255.0
        y = 0.299 * a[..., 0] + 0.587 * a[..., 1] + 0.114 * a[..., 2]
    return np.ascontiguousarray(np.clip(y * 255.0 + 0.5, 0, 255).astype(np.uint8))


class DISFlow:
    """DIS optical flow (``cv2.DISOpticalFlow``, FAST preset): ``flow(a, b)[y, x]`` is the
    displacement (dx, dy) that takes pixel (x, y) of image ``a`` to its match in ``b``."""

    def __init__(self, preset: int = _PRESET):
        self.dis = cv2.DISOpticalFlow_create(preset)

    def pair(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Flow from uint8 gray ``a`` to ``b`` as (H, W, 2) float32."""
        h, w = a.shape
        if h < 8 or w < 8:  # DIS needs a few patches; tiny frames get zero flow
            return np.zeros((h, w, 2), np.float32)
        return self.dis.calc(a, b, None)

    def clip(self, frames) -> tuple[torch.Tensor, torch.Tensor]:
        """For T frames ((3,H,W) tensors or (H,W,3) arrays) return ``(flow_prev, flow_next)``,
        each (T, 2, H, W): ``flow_prev[t]`` maps t to t-1, ``flow_next[t]`` maps t to t+1
        (zeros where the neighbour does not exist)."""
        grays = [_gray_u8(f) for f in frames]
        t = len(grays)
        h, w = grays[0].shape
        prev = np.zeros((t, 2, h, w), np.float32)
        nxt = np.zeros((t, 2, h, w), np.float32)
        for i in range(t - 1):
            nxt[i] = self.pair(grays[i], grays[i + 1]).transpose(2, 0, 1)
            prev[i + 1] = self.pair(grays[i + 1], grays[i]).transpose(2, 0, 1)
        return torch.from_numpy(prev), torch.from_numpy(nxt)
