"""Edge maps: the input of the paired edges -> frame task of the translation.

:func:`edge_map` is Canny (``cv2.Canny``, L1 gradient, 3x3 Sobel) on the picture's 8-bit BT.601
grey (:func:`vidfx.ops.colour.grey_u8`) after a 3x3 Gaussian blur (sigma 0.8) that keeps JPEG
and sensor noise from firing. The hysteresis thresholds follow the grey picture's median m
("automatic Canny"): low = max((1 - ``SPREAD``) m, ``MIN_LOW``), high = max((1 + ``SPREAD``) m,
``MIN_HIGH``), so a dark dusk frame and a bright day frame give edge maps of similar density,
while the floors keep a nearly black or flat picture from turning its noise into edges. The 1-px
edges are then softened with a Gaussian (sigma ``SOFTEN``) and rescaled so that the centre of a
straight 1-px edge stays 1: a network sees a short ramp across each edge, not a 1-px aliased
line. Everything is OpenCV on integers and fixed kernels: the same picture always gives the same
map.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..ops.colour import grey_u8

SPREAD = 0.33  # thresholds at (1 -/+ SPREAD) x the median grey level
MIN_LOW = 10.0  # floors of the thresholds (8-bit grey levels)
MIN_HIGH = 30.0
PRE_BLUR = 0.8  # sigma of the 3x3 Gaussian before Canny
SOFTEN = 0.7  # sigma of the Gaussian over the edges (0 = hard 0/1 edges)


def canny_thresholds(grey: np.ndarray) -> tuple[float, float]:
    """(low, high) hysteresis thresholds of :func:`edge_map` for an 8-bit grey picture (see the
    module docstring).

    Shape:
        - grey: uint8 :math:`(H, W)`
    """
    median = float(np.median(grey))
    low = min(max((1.0 - SPREAD) * median, MIN_LOW), 255.0)
    high = min(max((1.0 + SPREAD) * median, MIN_HIGH), 255.0)
    return low, max(high, low)


def edge_map(image: np.ndarray, soften: float = SOFTEN) -> np.ndarray:
    """The edge map of one picture, 1 on edges and 0 away from them (see the module docstring).

    ``soften`` is the sigma of the Gaussian over the 1-px Canny edges (0: the hard 0/1 edges).

    Shape:
        - image: float32 :math:`(H, W, 3)` RGB 0..1 (uint8 is accepted too)
        - output: float32 :math:`(H, W, 1)`, 0..1
    """
    grey = grey_u8(image)
    grey = cv2.GaussianBlur(grey, (3, 3), PRE_BLUR)
    low, high = canny_thresholds(grey)
    edges = (cv2.Canny(grey, low, high, apertureSize=3, L2gradient=False) > 0).astype(np.float32)
    if soften > 0:
        radius = max(1, int(np.ceil(3 * soften)))
        kernel = cv2.getGaussianKernel(2 * radius + 1, soften).ravel()
        blurred = cv2.sepFilter2D(edges, cv2.CV_32F, kernel, kernel, borderType=cv2.BORDER_REFLECT)
        edges = np.clip(blurred / kernel[radius], 0.0, 1.0)
    return np.ascontiguousarray(edges[..., None], np.float32)


def edge_maps(frames: np.ndarray, soften: float = SOFTEN) -> np.ndarray:
    """:func:`edge_map` of every frame.

    Shape:
        - frames: float32 :math:`(T, H, W, 3)` RGB 0..1
        - output: float32 :math:`(T, H, W, 1)`, 0..1
    """
    h, w = frames.shape[1:3]
    out = np.zeros((len(frames), h, w, 1), np.float32)
    for t, frame in enumerate(frames):
        out[t] = edge_map(frame, soften)
    return out
