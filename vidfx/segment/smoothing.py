"""Flow-guided temporal smoothing of per-pixel class scores.

For each new frame, the previous smoothed scores are warped into the new frame with dense
optical flow (OpenCV DIS, new -> previous), and blended with the new scores where the flow
is trustworthy:

    s_t = (1 - a) * z_t + a * warp(s_{t-1})   where the pixel is visible in both frames
    s_t = z_t                                 where it is occluded / the flow is inconsistent

``z_t`` are log-probabilities (log-softmax of the logits), so scores from different frames
are on the same scale. The occlusion check is forward-backward consistency: a pixel whose
forward and backward flows do not cancel (within a tolerance that grows with the motion)
starts afresh, which keeps labels from being dragged across disocclusions.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..ops.flow import DISFlow, consistent_mask
from ..ops.warp import backward_warp_np

MIN_FLOW_SIDE = 16  # DIS needs a few patches; smaller pictures are not smoothed


class TemporalSmoother:
    """Recurrent EMA of warped log-probabilities across consecutive frames.

    ``strength`` a in [0, 1): weight of the warped history (0 turns smoothing off).
    Call ``step(scores, grey)`` once per frame in order; ``reset()`` at a cut or when the
    frames stop being consecutive. ``scores`` are (K, h, w) logits at the working size,
    ``grey`` the (h, w) uint8 picture at the same size.
    """

    def __init__(self, strength: float = 0.6, preset: str = "fast"):
        self.strength = float(strength)
        self.flow = DISFlow(preset)
        self.reset()

    def reset(self) -> None:
        """Forget the history."""
        self.prev_grey: np.ndarray | None = None
        self.prev_scores: np.ndarray | None = None
        self.last_valid_fraction = 0.0

    def step(self, scores: torch.Tensor, grey: np.ndarray) -> torch.Tensor:
        """Smoothed log-probabilities (K, h, w) for this frame."""
        logp = F.log_softmax(scores.float(), dim=0)
        if self.strength <= 0:
            return logp
        cur = logp.permute(1, 2, 0).cpu().numpy()  # (h, w, K)
        h, w = grey.shape
        out = cur
        usable = min(h, w) >= MIN_FLOW_SIDE
        if usable and self.prev_scores is not None and self.prev_scores.shape == cur.shape:
            back = self.flow(grey, self.prev_grey)
            fwd = self.flow(self.prev_grey, grey)
            valid = consistent_mask(back, fwd)
            self.last_valid_fraction = float(valid.mean())
            warped = backward_warp_np(self.prev_scores, back)
            a = self.strength * valid[..., None].astype(np.float32)
            out = (1 - a) * cur + a * warped
        self.prev_grey = grey if usable else None
        self.prev_scores = out
        return torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1))).to(scores.device)


def flicker_motion(greys: list[np.ndarray], ignore_occluded: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    """The motion :func:`flicker` compensates, per consecutive pair: (backward Farneback flow
    from frame t to t-1, mask of the pixels kept). Compute it once per clip and pass it to
    ``flicker(..., motion=...)`` to score several label sequences of the same frames."""
    motion = []
    args = (None, 0.5, 4, 21, 3, 5, 1.1, 0)
    for t in range(1, len(greys)):
        back = cv2.calcOpticalFlowFarneback(greys[t], greys[t - 1], *args)
        if ignore_occluded:
            fwd = cv2.calcOpticalFlowFarneback(greys[t - 1], greys[t], *args)
            keep = consistent_mask(back, fwd)
        else:
            keep = np.ones(greys[t].shape[:2], bool)
        motion.append((back, keep))
    return motion


def flicker(
    labels: list[np.ndarray],
    greys: list[np.ndarray] | None = None,
    ignore_occluded: bool = True,
    motion: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> float:
    """Fraction of pixels whose label changes between consecutive frames after motion
    compensation (mean over frame pairs).

    Motion is measured with Farneback flow, deliberately a different estimator from the
    DIS flow the smoother uses, so the metric does not simply reward agreeing with it.
    Occluded pixels (forward-backward inconsistent) are left out. ``motion`` (from
    :func:`flicker_motion` on the same frames) skips computing the flow again; its occlusion
    choice then stands and ``ignore_occluded`` is not used.
    """
    if motion is None:
        if greys is None:
            raise ValueError("flicker: give the grey frames or their motion")
        motion = flicker_motion(greys, ignore_occluded)
    if len(motion) != len(labels) - 1:
        raise ValueError(f"flicker: motion for {len(motion) + 1} frames, labels for {len(labels)}")
    rates = []
    for t, (back, keep) in enumerate(motion, start=1):
        warped = backward_warp_np(labels[t - 1], back, "nearest")
        if keep.sum() == 0:
            continue
        rates.append(float((warped[keep] != labels[t][keep]).mean()))
    return float(np.mean(rates)) if rates else 0.0
