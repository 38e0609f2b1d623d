"""One code path for every transition method (crossfade, flow, ours), used by the node and the eval.

"Ours" works on a square crop around the face(s) of the frames near the cut: the synthesizer
runs at its working size on that crop, its flows and blend weights are applied to the
full-resolution crop, and the result is feathered into the flow interpolation of the full
frames (outside the crop: the body, hands and background), which is the crossfade where the
picture is still.
"""

from __future__ import annotations

import copy
import logging
import os
import random
import time
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from vidfx.ops.weights import build_model, load_model

from .baselines import crossfade, dis_flow, flow_blend, flow_interpolate
from .interpolate import interpolate_keypoints, transition_times
from .keymap import render_keymap
from .keypoints import FaceTopology, KeypointDetector, Keypoints, make_detector, smooth_sequence
from .model import FAMILY, SynthNet, build_synthnet, source_detail_energy

log = logging.getLogger("vidfx.jumpcut")

DEFAULT_WEIGHTS = os.path.join(os.path.dirname(__file__), "weights", "jumpcut_prior.pt")
METHODS = ("crossfade", "flow", "ours")


class FallbackToCrossfade(Exception):
    """Raised by the synthesizer when it cannot work on this input (no face, several faces...)."""


def make_transition(
    method: str,
    before: list[np.ndarray],
    after: list[np.ndarray],
    num_frames: int,
    synthesizer: Synthesizer | None = None,
) -> tuple[list[np.ndarray], dict]:
    """``num_frames`` frames between ``before[-1]`` (frame A) and ``after[0]`` (frame B).

    ``before``/``after`` are float32 (H, W, 3) 0..1 frames on each side of the gap, in time
    order (only the end frames are used by the baselines). Returns the frames and an info dict
    with ``method`` (what was actually used) and, after a fallback, ``fallback`` (the reason).
    """
    times = transition_times(num_frames)
    a, b = before[-1], after[0]
    if method == "crossfade":
        return crossfade(a, b, times), {"method": "crossfade"}
    if method == "flow":
        return flow_interpolate(a, b, times), {"method": "flow"}
    if method == "ours":
        if synthesizer is None:
            raise ValueError("method 'ours' needs a Synthesizer")
        try:
            return synthesizer.transition(before, after, num_frames), {"method": "ours"}
        except FallbackToCrossfade as exc:
            log.warning("jumpcut: %s; using a crossfade for this transition", exc)
            return crossfade(a, b, times), {"method": "crossfade", "fallback": str(exc)}
    raise ValueError(f"unknown jumpcut method {method!r}; valid: {', '.join(METHODS)}")


# --- crops and examples -------------------------------------------------------------------------


def crop_box(kps: list[Keypoints], height: int, width: int, margin: float = 1.8) -> tuple[int, int, int]:
    """Square (x0, y0, side) around the union of the faces in ``kps``, ``margin`` times its larger
    side, kept inside the frame. The whole frame (its shorter side) if no face is given."""
    faces = [k.face[:, :2] for k in kps if k.face is not None]
    if not faces:
        side = min(height, width)
        return (width - side) // 2, (height - side) // 2, side
    pts = np.concatenate(faces)
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    side = int(round(min(min(height, width), max(32.0, margin * max(x1 - x0, y1 - y0)))))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = int(round(np.clip(cx - side / 2, 0, width - side)))
    top = int(round(np.clip(cy - side / 2, 0, height - side)))
    return left, top, side


def crop_keypoints(kp: Keypoints, box: tuple[int, int, int], size: int) -> Keypoints:
    """Keypoints moved into crop coordinates scaled to ``size`` pixels."""
    x0, y0, side = box
    s = size / side
    face = body = None
    if kp.face is not None:
        face = kp.face.copy()
        face[:, 0] = (face[:, 0] - x0) * s
        face[:, 1] = (face[:, 1] - y0) * s
        face[:, 2] = face[:, 2] * s
    if kp.body is not None:
        body = kp.body.copy()
        body[:, 0] = (body[:, 0] - x0) * s
        body[:, 1] = (body[:, 1] - y0) * s
    return Keypoints(face, body, kp.num_faces, kp.detector)


BODY_POINTS = np.arange(11, 25)  # pose shoulders..hips (0-10 are face points, covered by the mesh)


def _anchors(kp: Keypoints) -> dict[str, np.ndarray]:
    out = {}
    if kp.face is not None:
        out["face"] = kp.face[:, :2]
    if kp.body is not None:
        out["body"] = kp.body[BODY_POINTS, :2]
        out["body_vis"] = kp.body[BODY_POINTS, 2] > 0.5
    return out


def keypoint_flow(target: Keypoints, sources: list[Keypoints], size: int, step: int = 2) -> np.ndarray:
    """Per source, where each target pixel lies in that source: a piecewise-linear warp over a
    Delaunay triangulation of the target's face (and visible body) points plus fixed points on the
    crop border. Keypoints are in crop pixels at ``size``; returns (S, 2, size, size) in -1..1
    (``grid_sample`` coordinates), computed every ``step`` pixels and upsampled. Identity for a
    source without a face (and everywhere if the target has none)."""
    from scipy.spatial import Delaunay

    g = size // step
    ys, xs = (np.mgrid[0:g, 0:g].astype(np.float64) + 0.5) * step
    grid = np.stack([xs.ravel(), ys.ravel()], 1)
    flows = np.repeat(grid.T[None], len(sources), 0)  # (S, 2, g*g) in pixels
    ta = _anchors(target)
    if "face" in ta:
        k = np.linspace(0, size, 7)
        border = np.array(
            [(x, 0) for x in k] + [(x, size) for x in k] + [(0, y) for y in k[1:-1]] + [(size, y) for y in k[1:-1]],
            np.float64,
        )
        body = np.zeros((0, 2))
        if "body" in ta:
            keep = ta["body_vis"] & ((ta["body"] > -0.2 * size) & (ta["body"] < 1.2 * size)).all(1)
            body = ta["body"][keep]
        pt = np.concatenate([ta["face"], border, body]).astype(np.float64)
        try:
            tri = Delaunay(pt, qhull_options="QJ")
            simplex = tri.find_simplex(grid)
        except Exception:  # degenerate points: identity
            simplex = np.full(len(grid), -1)
        ok = simplex >= 0
        if ok.any():
            trans = tri.transform[simplex[ok]]
            bary2 = np.einsum("nij,nj->ni", trans[:, :2], grid[ok] - trans[:, 2])
            bary = np.concatenate([bary2, 1 - bary2.sum(1, keepdims=True)], 1)
            verts = tri.simplices[simplex[ok]]
            for si, src in enumerate(sources):
                sa = _anchors(src)
                if "face" not in sa or sa["face"].shape != ta["face"].shape:
                    continue
                src_body = body.copy()
                if "body" in sa and len(body):
                    sb = sa["body"][keep]
                    vis = sa["body_vis"][keep]
                    src_body[vis] = sb[vis]
                ps = np.concatenate([sa["face"], border, src_body]).astype(np.float64)
                flows[si][:, ok] = (bary[:, :, None] * ps[verts]).sum(1).T
    out = torch.from_numpy((flows / size * 2 - 1).reshape(len(sources), 2, g, g).astype(np.float32))
    if step != 1:
        # the grid points are pixel centres of a coarser grid: bilinear upsampling keeps them aligned
        out = F.interpolate(out, size=(size, size), mode="bilinear", align_corners=False)
    return out.numpy()


class CropContext:
    """Consecutive real frames + their keypoints, seen through one crop, with cached model inputs.

    Frames are float32 0..1 or uint8 (H, W, 3) arrays.
    """

    def __init__(
        self,
        frames: list[np.ndarray],
        kps: list[Keypoints],
        box: tuple[int, int, int],
        topology: FaceTopology,
        size: int,
    ):
        self.frames, self.kps, self.box, self.topology, self.size = frames, kps, box, topology, size
        self._img: dict[int, torch.Tensor] = {}
        self._map: dict[int, torch.Tensor] = {}
        self._flows: dict[tuple[int, int], tuple] = {}

    def full_crop(self, i: int) -> np.ndarray:
        """Frame ``i`` cropped, at full resolution (float32 H, W, 3)."""
        x0, y0, side = self.box
        return self.frames[i][y0 : y0 + side, x0 : x0 + side]

    def image(self, i: int) -> torch.Tensor:
        """Frame ``i`` cropped and resized to the working size, (3, R, R)."""
        if i not in self._img:
            small = cv2.resize(
                np.ascontiguousarray(self.full_crop(i)), (self.size, self.size), interpolation=cv2.INTER_AREA
            )
            img = torch.from_numpy(small).permute(2, 0, 1).float()
            self._img[i] = img / 255.0 if small.dtype == np.uint8 else img
        return self._img[i]

    def render(self, kp: Keypoints) -> torch.Tensor:
        """Keypoint map of (full-frame) keypoints ``kp`` in this crop."""
        ck = crop_keypoints(kp, self.box, self.size)
        return torch.from_numpy(render_keymap(ck, self.topology, self.size, self.size))

    def flow(self, kp: Keypoints, sources: list[int]) -> np.ndarray:
        """``keypoint_flow`` from (full-frame) target keypoints ``kp`` to the given source frames."""
        crop = lambda k: crop_keypoints(k, self.box, self.size)  # noqa: E731
        return keypoint_flow(crop(kp), [crop(self.kps[i]) for i in sources], self.size)

    def flow_frame(self, a: int, b: int, tau: float) -> torch.Tensor:
        """The DIS flow interpolation between frames ``a`` and ``b`` at time ``tau``, at the working size."""
        if (a, b) not in self._flows:
            na, nb = (np.ascontiguousarray(self.image(i).permute(1, 2, 0).numpy()) for i in (a, b))
            self._flows[(a, b)] = (na, nb, dis_flow(na, nb), dis_flow(nb, na))
            if len(self._flows) > 256:
                self._flows.pop(next(iter(self._flows)))
        na, nb, f01, f10 = self._flows[(a, b)]
        frame = flow_blend(na, nb, f01, f10, tau)
        return torch.from_numpy(frame).permute(2, 0, 1)

    def keymap(self, i: int) -> torch.Tensor:
        """Keypoint map of frame ``i``'s own keypoints."""
        if i not in self._map:
            self._map[i] = self.render(self.kps[i])
        return self._map[i]


# --- the synthesizer ----------------------------------------------------------------------------


def load_net(path: str | None = None) -> SynthNet:
    """A synthesizer network of its own (to train or adapt) with weights from ``path`` (default:
    the shipped prior), in eval mode; ModelError naming the file if it is missing or corrupt."""
    net, _ = build_model(path or DEFAULT_WEIGHTS, FAMILY, build_synthnet)
    return net


def shared_net(path: str | None = None) -> SynthNet:
    """The synthesizer network from ``path`` (default: the shipped prior) shared through the
    process-wide cache of ``vidfx.ops.weights``: for inference only (``Synthesizer`` adapts a copy)."""
    net, _ = load_model(path or DEFAULT_WEIGHTS, FAMILY, build_synthnet)
    return net


@dataclass
class SynthOptions:
    """Knobs of the "ours" transition."""

    adapt_steps: int = 10  # per-video (per-transition) fine-tuning steps; 0 = prior only
    adapt_lr: float = 2e-4
    adapt_batch: int = 4
    easing: str = "smoothstep"
    # temporal keypoint smoothing (frames). Off by default: within one side of a cut the smoothing is
    # one-sided at the end frames and drags A's and B's keypoints away from the real A and B
    smooth_sigma: float = 0.0
    velocity: bool = True  # carry the end frames' keypoint velocities into the transition (Hermite)
    source_offset: int = 4  # extra sources this many frames before A and after B
    margin: float = 1.8  # crop side / face size
    # share of the fine detail taken from the most-weighted warped source (SynthNet.forward)
    detail: float = 1.0
    # how far the fine band's local energy is restored to the sources' (SynthNet.forward)
    energy: float = 1.0
    # where the ends A and B have moved less than about this many pixels of the synthesizer's
    # working grid (DIS flow), the crossfade is the right answer (exact for a still region, and
    # finer motion than the grid resolves): ours fades into it (0 = off)
    still: float = 1.0
    seed: int = 0


class Synthesizer:
    """Makes "ours" transitions: keypoints, interpolation, per-transition adaptation, synthesis."""

    def __init__(self, net: SynthNet, detector: KeypointDetector | None = None, options: SynthOptions | None = None):
        self.net = net
        self.detector = detector or make_detector("auto", video_mode=False, with_body=True)
        self.opt = options or SynthOptions()
        self.last_info: dict = {}

    @classmethod
    def load(
        cls, weights: str | None = None, adapt_steps: int | None = None, detector: str = "auto", **options
    ) -> Synthesizer:
        """The shipped prior (or ``weights``) with a keypoint detector (``auto``, ``mediapipe``, ``dlib``)."""
        opts = SynthOptions(**options)
        if adapt_steps is not None:
            opts.adapt_steps = adapt_steps
        return cls(shared_net(weights), make_detector(detector, video_mode=False, with_body=True), opts)

    def keypoints(self, frames: list[np.ndarray]) -> list[Keypoints]:
        """Detected keypoints of float frames."""
        return [self.detector.detect((np.clip(f, 0, 1) * 255 + 0.5).astype(np.uint8)) for f in frames]

    def transition(self, before: list[np.ndarray], after: list[np.ndarray], num_frames: int) -> list[np.ndarray]:
        """``num_frames`` frames between ``before[-1]`` and ``after[0]``; raises FallbackToCrossfade."""
        o = self.opt
        clock = [time.perf_counter()]
        kb = self.keypoints(before)
        ka = self.keypoints(after)
        clock.append(time.perf_counter())
        end_a, end_b = kb[-1], ka[0]
        for name, k in (("the frame before the cut", end_a), ("the frame after the cut", end_b)):
            if k.face is None:
                raise FallbackToCrossfade(f"no face found in {name}")
            if k.num_faces > 1:
                raise FallbackToCrossfade(f"{k.num_faces} faces in {name} (one talking head expected)")
        kb = smooth_sequence(kb, o.smooth_sigma)
        ka = smooth_sequence(ka, o.smooth_sigma)
        frames = list(before) + list(after)
        kps = kb + ka
        ia, ib = len(before) - 1, len(before)
        h, w = frames[0].shape[:2]
        box = crop_box([k for k in kps if k.num_faces <= 1], h, w, o.margin)
        size = self.net.cfg.size
        ctx = CropContext(frames, kps, box, self.detector.topology, size)
        net = self.net
        if o.adapt_steps > 0:
            net = self._adapt(ctx, len(before))
        clock.append(time.perf_counter())
        s_a = max(0, ia - o.source_offset)
        s_b = min(len(frames) - 1, ib + o.source_offset)
        sources = [s_a, ia, ib, s_b]
        times = transition_times(num_frames)
        prev_a = kps[ia - 1] if ia >= 1 else None
        next_b = kps[ib + 1] if ib + 1 < len(kps) else None
        targets = interpolate_keypoints(
            kps[ia], kps[ib], times, o.easing, prev_a, next_b, span=num_frames + 1 if o.velocity else None
        )
        src_img = torch.stack([ctx.image(i) for i in sources])[None]
        src_map = torch.stack([ctx.keymap(i) for i in sources])[None]
        big = torch.stack([torch.from_numpy(np.ascontiguousarray(ctx.full_crop(i))).permute(2, 0, 1) for i in sources])[
            None
        ]
        a_full, b_full = frames[ia], frames[ib]
        feather = _feather_mask(box[2])
        x0, y0, side = box
        to_crop = lambda img: torch.from_numpy(np.ascontiguousarray(img[y0 : y0 + side, x0 : x0 + side])).permute(
            2, 0, 1
        )[None]  # noqa: E731
        with_flow = net.num_whole > 1
        f01 = dis_flow(a_full, b_full) if with_flow or o.still > 0 else None  # one DIS pass for both uses
        flow_full = flow_interpolate(a_full, b_full, times, f01=f01) if with_flow else None
        still = still_weight(f01, o.still * box[2] / size) if f01 is not None and o.still > 0 else None
        # the sources' detail energy: the same for every frame of the transition
        src_energy = source_detail_energy(big, box[2] / size) if o.energy > 0 else None
        out = []
        with torch.no_grad():
            for i, (t, kp) in enumerate(zip(times, targets)):
                fade_full = (1 - t) * a_full + t * b_full
                kp_flow = torch.from_numpy(ctx.flow(kp, sources))[None]
                pred, _ = net(
                    src_img,
                    src_map,
                    ctx.render(kp)[None],
                    to_crop(fade_full),
                    kp_flow,
                    out_sources=big,
                    flow_frame=to_crop(flow_full[i]) if with_flow else None,
                    detail=self.opt.detail,
                    energy=self.opt.energy,
                    still=None if still is None else to_crop(still),
                    source_energy=src_energy,
                )
                crop = pred[0].clamp(0, 1).permute(1, 2, 0).numpy()
                # outside the crop (body, hands, background): the flow interpolation, the crossfade
                # where still. Not a mix of the two: two blends of A and B ghost a moving hand 4 times
                frame = flow_full[i].copy() if with_flow else fade_full.copy()
                if still is not None:
                    frame = still * fade_full + (1 - still) * frame
                region = frame[y0 : y0 + side, x0 : x0 + side]
                frame[y0 : y0 + side, x0 : x0 + side] = feather * crop + (1 - feather) * region
                out.append(frame.astype(np.float32))
        clock.append(time.perf_counter())
        self.last_info = {
            "box": box,
            "sources": sources,
            "seconds": {
                "keypoints": clock[1] - clock[0],
                "adaptation": clock[2] - clock[1],
                "synthesis": clock[3] - clock[2],
            },
        }
        return out

    def _adapt(self, ctx: CropContext, split: int) -> SynthNet:
        """A copy of the prior fine-tuned on the real frames on each side of the cut (never across it)."""
        from .train import SimpleAdam, train_steps  # imported here: train.py imports this module

        o = self.opt
        net = copy.deepcopy(self.net).requires_grad_(True)  # self.net may be the shared, frozen prior
        opt = SimpleAdam(net.parameters(), lr=o.adapt_lr)
        n = len(ctx.frames)
        sides = []
        for lo, hi in ((0, split), (split, n)):
            usable = [lo <= i < hi for i in range(n)]
            if hi - lo >= 5:
                sides.append((ctx, usable))
        if not sides:
            return net
        rng = random.Random(o.seed)
        train_steps(
            net, opt, sides, o.adapt_steps, o.adapt_batch, rng, real_prob=0.3, easing=o.easing, max_gap=6, max_offset=3
        )
        return net


STILL_BLUR = 0.01  # the motion magnitude is smoothed over this share of the frame's longer side


def still_weight(flow: np.ndarray, still_px: float) -> np.ndarray:
    """Per pixel, how still the picture is between two end frames, from the flow between them
    (``baselines.dis_flow(a, b)``): ``exp(-(m / still_px)^2)``, m = the flow magnitude in pixels
    of the frame, smoothed (Gaussian, sigma :data:`STILL_BLUR` of the longer side) so that the
    fade into the crossfade leaves no seams. 1 = still (the crossfade is exact), 0 = moving.

    Shape:
        - flow: :math:`(H, W, 2)` float32; output: :math:`(H, W, 1)` float32
    """
    mag = np.linalg.norm(flow, axis=2)
    mag = cv2.GaussianBlur(mag, (0, 0), max(1.0, STILL_BLUR * max(flow.shape[:2])))
    return np.exp(-((mag / still_px) ** 2)).astype(np.float32)[..., None]


def _feather_mask(side: int) -> np.ndarray:
    """(side, side, 1) weights: 1 inside, ramping to 0 over the outer ~10 % of the crop."""
    ramp = max(2, side // 10)
    d = np.minimum(np.arange(side), np.arange(side)[::-1]).astype(np.float32)
    r = np.clip(d / ramp, 0, 1)
    return (np.minimum(r[:, None], r[None, :]))[..., None]
