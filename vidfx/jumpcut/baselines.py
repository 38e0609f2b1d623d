"""Baseline transitions between two end frames: crossfade and DIS optical-flow interpolation.

Images are float32 (H, W, 3) numpy arrays in 0..1; ``times`` are in (0, 1), 0 = frame A.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..ops.colour import grey_u8
from ..ops.flow import DISFlow
from ..ops.warp import backward_warp_np


def crossfade(a: np.ndarray, b: np.ndarray, times) -> list[np.ndarray]:
    """Linear dissolve from ``a`` to ``b``."""
    return [((1 - t) * a + t * b).astype(np.float32) for t in times]


def dis_flow(a: np.ndarray, b: np.ndarray, max_side: int = 512) -> np.ndarray:
    """Dense flow from ``a`` to ``b`` (H, W, 2) with OpenCV's DIS (medium preset), in pixels of ``a``.

    Large frames are downscaled to ``max_side`` for speed and the flow is scaled back up.
    """
    h, w = a.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    size = (max(8, int(round(w * scale))), max(8, int(round(h * scale))))
    ga = grey_u8(cv2.resize((a * 255).astype(np.uint8), size, interpolation=cv2.INTER_AREA))
    gb = grey_u8(cv2.resize((b * 255).astype(np.uint8), size, interpolation=cv2.INTER_AREA))
    flow = DISFlow("medium")(ga, gb)
    if scale != 1.0:
        flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR) / scale
    return flow.astype(np.float32)


def flow_interpolate(
    a: np.ndarray, b: np.ndarray, times, max_side: int = 512, f01: np.ndarray | None = None
) -> list[np.ndarray]:
    """Frames between ``a`` and ``b`` from bidirectional DIS flow.

    Intermediate flows use the linear-motion approximation of Super SloMo (Jiang et al. 2018):
    F(t->0) = -(1-t) t F01 + t^2 F10 and F(t->1) = (1-t)^2 F01 - t (1-t) F10; both ends are
    warped to time t and blended with weights (1-t) and t. ``f01``: ``dis_flow(a, b, max_side)``
    when the caller already has it.
    """
    f01 = dis_flow(a, b, max_side) if f01 is None else f01
    f10 = dis_flow(b, a, max_side)
    return [flow_blend(a, b, f01, f10, t) for t in times]


def flow_blend(a: np.ndarray, b: np.ndarray, f01: np.ndarray, f10: np.ndarray, t: float) -> np.ndarray:
    """The frame at time ``t`` from the two end frames and their flows (see ``flow_interpolate``)."""
    ft0 = -(1 - t) * t * f01 + t * t * f10
    ft1 = (1 - t) ** 2 * f01 - t * (1 - t) * f10
    wa = backward_warp_np(a, ft0)
    wb = backward_warp_np(b, ft1)
    return ((1 - t) * wa + t * wb).astype(np.float32)
