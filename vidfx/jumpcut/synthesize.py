"""One code path for every transition method (crossfade, flow, ours), used by the node and the eval.

"Ours" works on a square crop around the face(s) of the frames near the cut: the synthesizer
runs at its working size on that crop, its flows and blend weights are applied to the
full-resolution crop, and the result is feathered into a crossfade of the full frames (outside
the crop a talking-head background barely moves).
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

from vidfx.core.errors import ModelError

from .baselines import crossfade, dis_flow, flow_blend, flow_interpolate
from .interpolate import interpolate_keypoints, transition_times
from .keymap import render_keymap
from .keypoints import FaceTopology, KeypointDetector, Keypoints, make_detector, smooth_sequence
from .model import SynthConfig, SynthNet

log = logging.getLogger("vidfx.jumpcut")

DEFAULT_WEIGHTS = os.path.join(os.path.dirname(__file__), "weights", "jumpcut_prior.pt")
METHODS = ("crossfade", "flow", "ours")


class FallbackToCrossfade(Exception):
    """Raised by the synthesizer when it cannot work on this input (no face, several faces...)."""


def make_transition(method: str, before: list[np.ndarray], after: list[np.ndarray], num_frames: int,
                    synthesizer: "Synthesizer | None" = None) -> tuple[list[np.ndarray], dict]:
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
        border = np.array([(x, 0) for x in k] + [(x, size) for x in k] + [(0, y) for y in k[1:-1]] +
                          [(size, y) for y in k[1:-1]], np.float64)
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

    def __init__(self, frames: list[np.ndarray], kps: list[Keypoints], box: tuple[int, int, int],
                 topology: FaceTopology, size: int):
        self.frames, self.kps, self.box, self.topology, self.size = frames, kps, box, topology, size
        self._img: dict[int, torch.Tensor] = {}
        self._map: dict[int, torch.Tensor] = {}
        self._flows: dict[tuple[int, int], tuple] = {}

    def full_crop(self, i: int) -> np.ndarray:
        """Frame ``i`` cropped, at full resolution (float32 H, W, 3)."""
        x0, y0, side = self.box
        return self.frames[i][y0:y0 + side, x0:x0 + side]

    def image(self, i: int) -> torch.Tensor:
        """Frame ``i`` cropped and resized to the working size, (3, R, R)."""
        if i not in self._img:
            small = cv2.resize(np.ascontiguousarray(self.full_crop(i)), (self.size, self.size), interpolation=cv2.INTER_AREA)
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


def make_example(ctx: CropContext, sources: list[int], a: int, b: int, t: int, use_real: bool,
                 easing: str) -> dict[str, torch.Tensor]:
    """One training example: predict real frame ``t`` (a < t < b) from ``sources``.

    The target keypoints are frame t's own (``use_real``) or, as at a real cut, interpolated
    between frames a and b (with the end velocities from frames a-1 and b+1). The whole-frame
    candidates are the dissolve of frames a and b at t and their DIS flow interpolation.
    """
    tau = (t - a) / (b - a)
    tgt_kp = ctx.kps[t] if use_real else interpolate_keypoints(
        ctx.kps[a], ctx.kps[b], [tau], easing, ctx.kps[a - 1], ctx.kps[b + 1], span=b - a)[0]
    tgt_map = ctx.keymap(t) if use_real else ctx.render(tgt_kp)
    img_a, img_b = ctx.image(a), ctx.image(b)
    return {
        "flow_frame": ctx.flow_frame(a, b, tau),
        "kp_flow": torch.from_numpy(ctx.flow(tgt_kp, sources)),
        "src_img": torch.stack([ctx.image(i) for i in sources]),
        "src_map": torch.stack([ctx.keymap(i) for i in sources]),
        "tgt_map": tgt_map,
        "fade": (1 - tau) * img_a + tau * img_b,
        "target": ctx.image(t),
    }


def sample_indices(rng: random.Random, usable: list[bool], max_gap: int, max_offset: int,
                   tries: int = 50, long_gap_prob: float = 0.0) -> tuple[list[int], int, int, int] | None:
    """Random (sources, a, b, t) with a < t < b, sources [a-k1, a, b, b+k2], every index usable;
    the gap (frames between a and b) is ``max_gap`` with probability ``long_gap_prob``, else uniform."""
    n = len(usable)
    for _ in range(tries):
        gap = max_gap if rng.random() < long_gap_prob else rng.randint(1, max_gap)
        k1, k2 = rng.randint(1, max_offset), rng.randint(1, max_offset)
        lo, hi = k1, n - 1 - gap - 1 - k2
        if hi < lo:
            continue
        a = rng.randint(lo, hi)
        b = a + gap + 1
        t = rng.randint(a + 1, b - 1)
        idx = [a - k1, a, b, b + k2, t]
        if all(usable[i] for i in idx):
            return idx[:4], a, b, t
    return None


def collate(examples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack examples into a batch."""
    return {k: torch.stack([e[k] for e in examples]) for k in examples[0]}


def loss_fn(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Charbonnier (smooth L1) + L2 photometric loss, plus an image-gradient term for edges."""
    diff = pred - target
    charb = torch.sqrt(diff * diff + 1e-6).mean()
    l2 = (diff * diff).mean()
    gx = (pred[..., :, 1:] - pred[..., :, :-1]) - (target[..., :, 1:] - target[..., :, :-1])
    gy = (pred[..., 1:, :] - pred[..., :-1, :]) - (target[..., 1:, :] - target[..., :-1, :])
    return charb + 10 * l2 + 0.5 * (gx.abs().mean() + gy.abs().mean())


class SimpleAdam:
    """Plain Adam for the short per-video adaptation. (torch.optim's first use imports
    torch._dynamo, which alone takes many seconds on a busy CPU: too much for a 60 s budget.)"""

    def __init__(self, params, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.betas, self.eps, self.t = lr, betas, eps, 0
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        """Forget the gradients."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One Adam update."""
        self.t += 1
        b1, b2 = self.betas
        c1, c2 = 1 - b1 ** self.t, 1 - b2 ** self.t
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            m.mul_(b1).add_(p.grad, alpha=1 - b1)
            v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
            p.addcdiv_(m / c1, (v / c2).sqrt_().add_(self.eps), value=-self.lr)


def attention_loss(aux: dict, target: torch.Tensor) -> torch.Tensor:
    """Teach the cross-modal attention correspondence and source choice directly (cheap to learn
    on a CPU budget): within each source its expected position should be where the keypoint warp
    says, and across sources its weight should follow how well each warped source matches."""
    pos_loss = (aux["attn_pos"] - aux["kp_pos"]).abs().mean()
    b, nq, s = aux["source_weights"].shape
    side = int(round(nq ** 0.5))
    err = F.adaptive_avg_pool2d((aux["coarse_warped"] - target[:, None]).abs().mean(2), side)  # (B, S, h, w)
    # the best source at a position: the one whose keypoints there are closest to the target's
    # (least warping) and whose warp matches best
    ys, xs = torch.meshgrid(torch.linspace(-1 + 1 / side, 1 - 1 / side, side),
                            torch.linspace(-1 + 1 / side, 1 - 1 / side, side), indexing="ij")
    ident = torch.stack([xs, ys], -1).reshape(1, nq, 1, 2)
    disp = (aux["kp_pos"] - ident).abs().sum(-1)  # (B, Nq, S)
    score = err.flatten(2).transpose(1, 2) / 0.01 + disp / 0.02
    best = (-score).softmax(-1).detach()
    choice = -(best * torch.log(aux["source_weights"] + 1e-6)).sum(-1).mean()
    return 2.0 * pos_loss + 0.2 * choice


def train_steps(net: SynthNet, opt, contexts: list[tuple[CropContext, list[bool]]], steps: int,
                batch: int, rng: random.Random, real_prob: float, easing: str, max_gap: int = 12,
                max_offset: int = 6, fade_dropout: float = 0.5, long_gap_prob: float = 0.0) -> float:
    """Run ``steps`` optimisation steps on examples drawn from ``contexts``; mean loss."""
    net.train()
    total = 0.0
    for _ in range(steps):
        examples = []
        while len(examples) < batch:
            ctx, usable = contexts[rng.randrange(len(contexts))]
            pick = sample_indices(rng, usable, max_gap, max_offset, long_gap_prob=long_gap_prob)
            if pick is None:
                continue
            sources, a, b, t = pick
            examples.append(make_example(ctx, sources, a, b, t, rng.random() < real_prob, easing))
        x = collate(examples)
        pred, aux = net(x["src_img"], x["src_map"], x["tgt_map"], x["fade"], x["kp_flow"],
                        use_fade=rng.random() >= fade_dropout, flow_frame=x["flow_frame"])
        # the attention's own correspondences must explain the target too (trains the attention directly)
        coarse = (aux["coarse_weights"][:, :, None] * (aux["coarse_warped"] - x["target"][:, None]).abs()).sum(1).mean()
        loss = loss_fn(pred, x["target"]) + 0.5 * coarse + attention_loss(aux, x["target"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.item()
    net.eval()
    return total / max(1, steps)


# --- the synthesizer ----------------------------------------------------------------------------

def load_net(path: str | None = None) -> SynthNet:
    """The synthesizer network with weights from ``path`` (default: the shipped prior)."""
    path = path or DEFAULT_WEIGHTS
    if not os.path.exists(path):
        raise ModelError(f"jumpcut: synthesizer weights {path} are missing")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        net = SynthNet(SynthConfig(**ckpt["config"]))
        net.load_state_dict(ckpt["model"])
    except Exception as exc:  # corrupt or incompatible file
        raise ModelError(f"jumpcut: cannot load synthesizer weights {path}: {exc}") from exc
    net.eval()
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
    seed: int = 0


class Synthesizer:
    """Makes "ours" transitions: keypoints, interpolation, per-transition adaptation, synthesis."""

    def __init__(self, net: SynthNet, detector: KeypointDetector | None = None, options: SynthOptions | None = None):
        self.net = net
        self.detector = detector or make_detector("auto", video_mode=False, with_body=True)
        self.opt = options or SynthOptions()
        self.last_info: dict = {}

    @classmethod
    def load(cls, weights: str | None = None, adapt_steps: int | None = None, detector: str = "auto",
             **options) -> "Synthesizer":
        """The shipped prior (or ``weights``) with a keypoint detector (``auto``, ``mediapipe``, ``dlib``)."""
        opts = SynthOptions(**options)
        if adapt_steps is not None:
            opts.adapt_steps = adapt_steps
        return cls(load_net(weights), make_detector(detector, video_mode=False, with_body=True), opts)

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
        targets = interpolate_keypoints(kps[ia], kps[ib], times, o.easing, prev_a, next_b,
                                        span=num_frames + 1 if o.velocity else None)
        src_img = torch.stack([ctx.image(i) for i in sources])[None]
        src_map = torch.stack([ctx.keymap(i) for i in sources])[None]
        big = torch.stack([torch.from_numpy(np.ascontiguousarray(ctx.full_crop(i))).permute(2, 0, 1) for i in sources])[None]
        a_full, b_full = frames[ia], frames[ib]
        feather = _feather_mask(box[2])
        x0, y0, side = box
        to_crop = lambda img: torch.from_numpy(np.ascontiguousarray(img[y0:y0 + side, x0:x0 + side])).permute(2, 0, 1)[None]  # noqa: E731
        with_flow = net.num_whole > 1
        flow_full = flow_interpolate(a_full, b_full, times) if with_flow else None
        out = []
        with torch.no_grad():
            for i, (t, kp) in enumerate(zip(times, targets)):
                fade_full = (1 - t) * a_full + t * b_full
                kp_flow = torch.from_numpy(ctx.flow(kp, sources))[None]
                pred, _ = net(src_img, src_map, ctx.render(kp)[None], to_crop(fade_full), kp_flow, out_sources=big,
                              flow_frame=to_crop(flow_full[i]) if with_flow else None)
                crop = pred[0].clamp(0, 1).permute(1, 2, 0).numpy()
                # outside the crop: the whole-frame candidates, equally weighted
                frame = 0.5 * (fade_full + flow_full[i]) if with_flow else fade_full.copy()
                region = frame[y0:y0 + side, x0:x0 + side]
                frame[y0:y0 + side, x0:x0 + side] = feather * crop + (1 - feather) * region
                out.append(frame.astype(np.float32))
        clock.append(time.perf_counter())
        self.last_info = {"box": box, "sources": sources,
                          "seconds": {"keypoints": clock[1] - clock[0], "adaptation": clock[2] - clock[1],
                                      "synthesis": clock[3] - clock[2]}}
        return out

    def _adapt(self, ctx: CropContext, split: int) -> SynthNet:
        """A copy of the prior fine-tuned on the real frames on each side of the cut (never across it)."""
        o = self.opt
        net = copy.deepcopy(self.net)
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
        train_steps(net, opt, sides, o.adapt_steps, o.adapt_batch, rng, real_prob=0.3, easing=o.easing,
                    max_gap=6, max_offset=3)
        return net


def _feather_mask(side: int) -> np.ndarray:
    """(side, side, 1) weights: 1 inside, ramping to 0 over the outer ~10 % of the crop."""
    ramp = max(2, side // 10)
    d = np.minimum(np.arange(side), np.arange(side)[::-1]).astype(np.float32)
    r = np.clip(d / ramp, 0, 1)
    return (np.minimum(r[:, None], r[None, :]))[..., None]
