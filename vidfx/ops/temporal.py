"""Temporal consistency shared by the evaluations (``vidfx eval fill``, ``vidfx eval translate``):
the flows of a reference clip and the warping error of an output along them."""

from __future__ import annotations

import math

import numpy as np

from .colour import grey_u8
from .flow import DISFlow, consistent_mask
from .warp import backward_warp_np

FLOW_PRESET = "medium"  # DIS preset of the reference flows


def truth_flows(truth: np.ndarray, preset: str = FLOW_PRESET) -> tuple[np.ndarray, np.ndarray]:
    """Forward flows of the truth and where they are reliable.

    ``flow[t]`` takes frame t to t+1 (DIS, ``preset``); ``valid[t]`` is True where the flow is
    forward-backward consistent (|f + b(p + f)|^2 < 0.01 (|f|^2 + |b(p + f)|^2) + 0.5, after
    Sundaram et al. 2010) and p + f(p) lands inside the frame.

    Shape:
        - truth: :math:`(T, H, W, 3)` float 0..1
        - output: (flow float32 :math:`(T-1, H, W, 2)`, valid bool :math:`(T-1, H, W)`)
    """
    dis = DISFlow(preset)
    t, h, w = truth.shape[:3]
    greys = [grey_u8(np.clip(f * 255 + 0.5, 0, 255).astype(np.uint8)) for f in truth]
    flows = np.zeros((max(t - 1, 0), h, w, 2), np.float32)
    valid = np.zeros((max(t - 1, 0), h, w), bool)
    for i in range(t - 1):
        fw = dis(greys[i], greys[i + 1])
        flows[i], valid[i] = fw, consistent_mask(fw, dis(greys[i + 1], greys[i]), alpha=0.01, beta=0.5)
    return flows, valid


def warp_error(
    output: np.ndarray,
    truth: np.ndarray,
    holes: np.ndarray,
    flows: tuple[np.ndarray, np.ndarray] | None = None,
) -> float:
    """Temporal warping error x 100 (percent of the 0..1 range) of ``output`` inside the holes.

    The output's frame t+1 is warped back to t along the truth's flow (:func:`truth_flows`;
    pass them in ``flows`` to reuse them), and the mean absolute difference (RGB) with output
    frame t is taken over the hole pixels of frame t where the flow is consistent, pooled over
    all frame pairs. 0 for an output that follows the true motion exactly; NaN with no such
    pixels (a single frame, or no consistent hole pixel).
    All-True ``holes`` give the error over whole frames.

    Shape:
        - output, truth: :math:`(T, H, W, 3)` float 0..1
        - holes: bool :math:`(T, H, W)`
    """
    flow, valid = flows if flows is not None else truth_flows(truth)
    holes = np.asarray(holes, bool)
    total, count = 0.0, 0
    for t in range(output.shape[0] - 1):
        sel = holes[t] & valid[t]
        if not sel.any():
            continue
        warped = backward_warp_np(output[t + 1], flow[t])
        diff = np.abs(warped[sel].astype(np.float64) - output[t][sel].astype(np.float64))
        total += float(diff.mean(-1).sum())
        count += int(sel.sum())
    return 100.0 * total / count if count else math.nan
