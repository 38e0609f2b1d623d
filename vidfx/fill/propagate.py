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

from vidfx.ops.colour import grey_u8
from vidfx.ops.flow import DISFlow

_CROSS = np.array([[0.0, 0.25, 0.0], [0.25, 0.0, 0.25], [0.0, 0.25, 0.0]], np.float32)
_SAMPLE_COLS = 1024  # points are sampled as a (rows, 1024) map: cv2.remap wants sides < 32767
FLOW_DILATE = 3  # px at the work scale: DIS patches bleed the object's motion this far out of the hole
RING = 2  # px: width of the ring of known pixels the seam offset is measured on
WORK_LONG_SIDE = 640  # px: automatic work scale (DIS costs about 10 ms at 960x540)
MAGNITUDE_SLACK = 0.05  # consistency threshold grows by this fraction of the flow length


def _relax(v: np.ndarray, known: np.ndarray, iterations: int) -> np.ndarray:
    """Jacobi iterations of the Laplace equation on the unknown pixels (known ones fixed)."""
    for _ in range(iterations):
        nb = cv2.filter2D(v, -1, _CROSS, borderType=cv2.BORDER_REPLICATE).reshape(v.shape)
        v = np.where(known[..., None], v, nb)
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
    ``WORK_LONG_SIDE``); ``blend``: seam correction.
    """

    window: int = 12
    preset: str = "fast"
    consistency: float = 1.0
    work_scale: float = 0.0
    blend: bool = True

    def scale_for(self, height: int, width: int) -> float:
        """Factor the frames are scaled by for the flow."""
        if self.work_scale > 0:
            return min(1.0, self.work_scale)
        return min(1.0, WORK_LONG_SIDE / max(height, width))


@dataclass
class Flows:
    """Completed neighbour flows of a chunk at the work scale, in work-scale pixels.

    ``forward[k]`` maps frame ``first + k`` to the next one, ``backward[k]`` maps frame
    ``first + k + 1`` to frame ``first + k``; ``sx``, ``sy`` are work size / full size.
    """

    first: int
    forward: list[np.ndarray] = field(default_factory=list)
    backward: list[np.ndarray] = field(default_factory=list)
    sx: float = 1.0
    sy: float = 1.0


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
            grey = grey_u8(frames[i])
            hole = holes[i].astype(np.float32)
            if ws != (w, h):
                grey = cv2.resize(grey, ws, interpolation=cv2.INTER_AREA)
                hole = cv2.resize(hole, ws, interpolation=cv2.INTER_AREA)
            greys.append(grey)
            small_holes.append(hole > 0)
        out = Flows(first=first, sx=ws[0] / w, sy=ws[1] / h)
        for k in range(len(greys) - 1):
            out.forward.append(complete_flow(self.dis(greys[k], greys[k + 1]), small_holes[k]))
            out.backward.append(complete_flow(self.dis(greys[k + 1], greys[k]), small_holes[k + 1]))
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
            colour, found = self._trace(frames, holes, landing, flows, t, xs, ys)
            n_hole = len(pts_hole[0])
            hole_colour, hole_found = colour[:n_hole], found[:n_hole]
            if self.config.blend and found[n_hole:].any():
                offset = np.zeros((h, w, 3), np.float32)
                ring_found = np.zeros((h, w), bool)
                ry, rx = pts_ring[0][found[n_hole:]], pts_ring[1][found[n_hole:]]
                offset[ry, rx] = frames[t][ry, rx] - colour[n_hole:][found[n_hole:]]
                ring_found[ry, rx] = True
                offset = membrane_fill(offset, ring_found)
                hole_colour = hole_colour + offset[pts_hole[0], pts_hole[1]]
            fy, fx = pts_hole[0][hole_found], pts_hole[1][hole_found]
            filled[t][fy, fx] = np.clip(hole_colour[hole_found], 0.0, 1.0)
            remaining[t][fy, fx] = False
        return filled, remaining

    def _trace(
        self,
        frames: np.ndarray,
        holes: np.ndarray,
        landing: dict[int, np.ndarray],
        flows: Flows,
        t: int,
        xs: np.ndarray,
        ys: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Colour of each point of frame t from the nearest frame, each way, that shows it.

        Returns ``(colour (n, 3), found (n,))``; a point found both ways gets the two colours
        weighted by inverse temporal distance.
        """
        n = len(xs)
        t_count, h, w = holes.shape
        lo, hi = flows.first, flows.first + len(flows.forward)
        total = np.zeros((n, 3), np.float32)
        weight = np.zeros(n, np.float32)
        for step in (1, -1):
            idx = np.arange(n)
            x, y = xs.copy(), ys.copy()
            k = t
            for dist in range(1, self.config.window + 1):
                nxt = k + step
                if len(idx) == 0 or nxt < lo or nxt > hi:
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
                blocked = landing[nxt][np.rint(y).astype(np.intp), np.rint(x).astype(np.intp)]
                hit = ~blocked
                if hit.any():
                    colour = _sample(frames[nxt], x[hit], y[hit])
                    total[idx[hit]] += colour / dist
                    weight[idx[hit]] += 1.0 / dist
                idx, x, y = idx[blocked], x[blocked], y[blocked]
                k = nxt
        found = weight > 0
        colour = np.zeros((n, 3), np.float32)
        colour[found] = total[found] / weight[found, None]
        return colour, found
