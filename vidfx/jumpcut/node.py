"""The ``jumpcut`` node: smooth each jump cut with a length-preserving synthesized transition.

For a cut at frame c (c is the first frame after the cut) and a transition of L frames, output
frames [c - L//2, c - L//2 + L) are replaced by frames synthesized between the last kept frame
before them (A) and the first kept frame after them (B); every other frame passes through.
The frame count, timing and audio are unchanged.

``frames_needed(n)``: with explicit cuts, a frame inside a transition needs A and B and
``context`` frames beyond each of them (sources and per-video adaptation); other frames need
only themselves. With ``cuts: auto`` every frame needs a window around it, in which cuts are
detected on small thumbnails (consistently: a cut's decision depends only on frames near it).
Transitions are cached (the last two), so each is computed once.

Bad input never crashes a run: no face, several faces, a cut at the first/last frame, cuts
closer than the transition length, non-RGB input -> a crossfade (or a skipped cut), with a
message in the log and the run summary (``node.messages``) and a row in ``node.report``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from vidfx.core.errors import ParamError
from vidfx.core.frame import ClipInfo, Frame
from vidfx.core.node import HostHints, Node
from vidfx.core.params import Param

from . import detect
from .cuts import RATIO, check_cuts, parse_cuts, seconds_to_frames
from .interpolate import EASINGS
from .synthesize import METHODS, make_transition

log = logging.getLogger("vidfx.jumpcut")

MAX_MERGED = 2  # the longest crossfade over a run of close cuts, in transition lengths


@dataclass
class Transition:
    """Output frames [start, end) are synthesized between input frames start-1 (A) and end (B)."""

    cut: int
    start: int
    end: int
    method: str
    reason: str = ""


class JumpCutNode(Node):
    """Jump-cut smoothing for talking heads (keypoint interpolation + cross-attention synthesis)."""

    type_name = "jumpcut"
    description = "Smooth jump cuts in talking-head video with a synthesized, length-preserving transition."
    # In a host, a transition between the outgoing and incoming clip: the bridge places the
    # cut at the transition's centre and its length is the transition's duration. Face
    # keypoints and the synthesizer's crops depend on the resolution: proxies render at full.
    host = HostHints(context="cut_transition", hidden=("cuts", "frames", "seconds"), scale_mode="full")
    splittable = False  # auto cut detection and per-video adaptation look across the whole clip
    params = (
        Param(
            "cuts",
            "list",
            ["auto"],
            "'auto', or frame numbers / timecodes (HH:MM:SS:FF, 12.5s) / an .otio "
            "or .edl file; a cut is the first frame after it",
        ),
        Param("seconds", "float", 0.5, "transition length in seconds (centred on each cut)", min=0.05, max=10),
        Param("frames", "int", 0, "transition length in frames (overrides seconds when > 0)", min=0, max=1000),
        Param("method", "choice", "ours", "ours (synthesizer), flow (DIS interpolation) or crossfade", choices=METHODS),
        Param(
            "context",
            "int",
            12,
            "real frames used beyond each end of a transition (sources, adaptation)",
            min=1,
            max=64,
        ),
        Param(
            "adapt_steps", "int", 10, "per-video adaptation steps of the synthesizer (0 = prior only)", min=0, max=2000
        ),
        Param(
            "sharpness",
            "float",
            1.0,
            "fine detail energy restored where blending averages it away: 1 = as sharp as the footage, "
            "0 = the blend as synthesized (softer)",
            min=0,
            max=1,
        ),
        Param("detector", "choice", "auto", "keypoint model", choices=("auto", "mediapipe", "dlib")),
        Param("ease", "choice", "smoothstep", "keypoint easing through the transition", choices=EASINGS),
        Param("weights", "str", "", "synthesizer weights file (empty: the shipped prior)"),
        Param(
            "sensitivity",
            "float",
            RATIO,
            "auto cut detection threshold on the cut score (face keypoints, image, sound); higher = fewer cuts",
            min=0.05,
            max=1000,
        ),
    )

    def __init__(self, name: str | None = None, **values):
        super().__init__(name, **values)
        self.report: list[dict] = []
        self.synthesizer = None
        self._cache: OrderedDict[tuple[int, int, str], list[torch.Tensor]] = OrderedDict()
        self._plan: list[Transition] = []
        self._auto = False
        self._thumbs: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # frame -> (thumbnail, face points)
        self._analyser = None
        self._audio: np.ndarray | None = None
        self._decided: dict[int, bool] = {}
        self._reported: set[tuple[int, str]] = set()

    # --- set-up --------------------------------------------------------------------------------
    def configure(self, inputs: list[ClipInfo], device: torch.device) -> ClipInfo:
        info = inputs[0]
        self.num_frames = info.num_frames
        self.length = self.p.frames or seconds_to_frames(self.p.seconds, info.fps)
        self.half = self.length // 2
        if self.length >= info.num_frames - 1:
            raise ParamError(
                f"{self.name}.seconds: a {self.length}-frame transition does not fit in {info.num_frames} frames"
            )
        cuts = parse_cuts(self.p.cuts, info.fps)
        self._auto = cuts is None
        self._channels = info.channels
        if not self._auto:
            self._plan = self._build_plan(cuts)
        else:
            self._fps = float(info.fps)
            self._audio = self._read_audio(info)
        if self.p.method == "ours":
            from .keypoints import make_detector
            from .synthesize import Synthesizer, SynthOptions, shared_net

            opts = SynthOptions(adapt_steps=self.p.adapt_steps, easing=self.p.ease, energy=self.p.sharpness)
            self.synthesizer = Synthesizer(
                shared_net(self.p.weights or None),
                make_detector(self.p.detector, video_mode=False, with_body=True),
                opts,
            )
        return info  # same length, timing and audio

    def _build_plan(self, cuts: list[int]) -> list[Transition]:
        """Transitions for a sorted list of cuts, with fallbacks for awkward ones (reported)."""
        n, length, half = self.num_frames, self.length, self.half
        good, bad = check_cuts(cuts, n, length)
        plan = [Transition(c, c - half, c - half + length, self.p.method) for c in good]
        reasons = {}
        for c, why in bad:
            reasons.setdefault(c, why)
        # awkward cuts: crossfade over a window clipped to the clip, merging overlapping windows
        # up to MAX_MERGED transition lengths (a run of cuts every few frames, e.g. a montage,
        # would otherwise merge into one window wider than the frames the node holds)
        windows: list[tuple[int, int, list[int]]] = []
        floor = 1  # windows start here or later: frames c-1 and c of a cut left as it is pass through
        for c in sorted(reasons):
            if c <= 0 or c >= n:
                self._note(c, reasons[c], "skipped")
                continue
            start, end = max(floor, c - half), min(n - 1, c - half + length)
            if windows and start <= windows[-1][1]:
                s0, e0, cs = windows[-1]
                if max(end, e0) - s0 <= MAX_MERGED * length or c <= e0:
                    # merged, or already inside that crossfade (which ends on frame c at the latest)
                    windows[-1] = (s0, min(max(end, e0), s0 + MAX_MERGED * length), cs + [c])
                    continue
                self._note(
                    c,
                    f"cut at frame {c} follows a run of close cuts whose crossfade already spans "
                    f"{e0 - s0} frames; left as it is",
                    "skipped",
                )
                floor = c + 1
                continue
            windows.append((start, end, [c]))
        for start, end, cs in windows:
            if end <= start:
                self._note(cs[0], reasons[cs[0]], "skipped")
                continue
            for c in cs:
                self._note(c, reasons[c], "crossfade")
            plan.append(Transition(cs[0], start, end, "crossfade", "; ".join(reasons[c] for c in cs)))
        plan.sort(key=lambda t: t.start)
        return plan

    def _note(self, cut: int, reason: str, outcome: str) -> None:
        """Report a fallback once (log + run summary + ``report``)."""
        key = (cut, reason)
        if key in self._reported:
            return
        self._reported.add(key)
        self.warn(reason)
        self.report.append({"cut": cut, "method": outcome, "reason": reason})

    # --- windows -------------------------------------------------------------------------------
    def _auto_radius(self) -> int:
        return 2 * self.length + self.p.context + detect.REACH + 2

    def _clamp(self, lo: int, hi: int) -> list[int]:
        return list(range(max(0, lo), min(self.num_frames - 1, hi) + 1))

    def _transition_at(self, n: int) -> Transition | None:
        for t in self._plan:
            if t.start <= n < t.end:
                return t
        return None

    def frames_needed(self, n: int) -> list[list[int]]:
        if self._auto:
            r = self._auto_radius()
            return [self._clamp(n - r, n + r)]
        t = self._transition_at(n)
        if t is None:
            return [[n]]
        return [self._clamp(t.start - 1 - self.p.context, t.end + self.p.context)]

    # --- auto detection ------------------------------------------------------------------------
    def _read_audio(self, info: ClipInfo) -> np.ndarray | None:
        """The clip's sound (mono, ``detect.AUDIO_RATE``) from its first frame, or None."""
        if info.audio is None:
            return None
        try:
            # ``start``: the clip's first frame on the file's timeline
            return detect.decode_audio(info.audio.path, info.audio.start)
        except Exception as exc:  # detection goes on without sound
            log.warning("jumpcut: cut detection without sound (%s)", exc)
            return None

    def _update_auto(self, n: int, frames: dict[int, Frame]) -> None:
        """Decide cuts near ``n`` from the window's frames (``detect``) and rebuild the plan."""
        if self._analyser is None:
            self._analyser = detect.FrameAnalyser()
        for i, f in frames.items():
            if i not in self._thumbs:
                rgb = f.data[:3].permute(1, 2, 0).clamp(0, 1).numpy()
                if rgb.shape[2] != 3:  # grey input
                    rgb = np.repeat(rgb[..., :1], 3, axis=2)
                self._thumbs[i] = self._analyser((rgb * 255.0 + 0.5).astype(np.uint8))
        lo, hi = min(frames), max(frames)
        for k in range(max(1, lo), hi + 1):
            if k in self._decided:
                continue
            # the same frames the whole-clip detector would look at for this cut
            idx = [i for i in range(k - detect.REACH, k + detect.REACH + 1) if 0 <= i < self.num_frames]
            if not all(i in self._thumbs for i in idx):
                continue
            audio = None
            if self._audio is not None:
                audio = self._audio[int(round(idx[0] / self._fps * detect.AUDIO_RATE)) :]  # from frame idx[0]
            self._decided[k] = detect.decide_in_window(
                [self._thumbs[i][0] for i in idx],
                [self._thumbs[i][1] for i in idx],
                idx.index(k),
                self._fps,
                audio,
                self.p.sensitivity,
                first=idx[0],
            )
        for i in [i for i in self._thumbs if i < n - self._auto_radius() - 2]:
            del self._thumbs[i]  # bounded memory on long videos
        cuts = sorted(k for k, v in self._decided.items() if v)
        self._plan = self._build_plan(cuts)

    # --- rendering -----------------------------------------------------------------------------
    def render(self, n: int, inputs: list[list[Frame]]) -> Frame:
        idx = self.frames_needed(n)[0]
        frames = dict(zip(idx, inputs[0]))
        if self._auto:
            self._update_auto(n, frames)
        t = self._transition_at(n)
        if t is None:
            return frames[n]
        key = (t.start, t.end, t.method)  # auto cuts decided later can change a window
        if key not in self._cache:
            self._cache[key] = self._make(t, frames)
            while len(self._cache) > 2:
                self._cache.popitem(last=False)
        return frames[n].with_data(self._cache[key][n - t.start])

    def _make(self, t: Transition, frames: dict[int, Frame]) -> list[torch.Tensor]:
        """The frames of one transition (always returns; failures fall back to a crossfade)."""
        a, b = t.start - 1, t.end
        ctx = self.p.context
        before_idx = [i for i in range(a - ctx, a + 1) if i in frames]
        after_idx = [i for i in range(b, b + ctx + 1) if i in frames]
        to_np = lambda f: f.data.permute(1, 2, 0).contiguous().numpy().astype(np.float32)  # noqa: E731
        method = t.method
        if method != "crossfade" and self._channels != 3:
            self._note(t.cut, f"cut at frame {t.cut}: {self._channels}-channel input, crossfade fallback", "crossfade")
            method = "crossfade"
        num = t.end - t.start
        if a not in frames or b not in frames:  # cannot happen with the windows above; never crash
            self._note(t.cut, f"cut at frame {t.cut}: its end frames are not at hand; left as it is", "skipped")
            return [frames[i].data for i in range(t.start, t.end)]
        before = [to_np(frames[i]) for i in before_idx]
        after = [to_np(frames[i]) for i in after_idx]
        try:
            out, info = make_transition(method, before, after, num, synthesizer=self.synthesizer)
        except Exception as exc:  # a model failure must not end the run
            log.exception("jumpcut: transition at cut %d failed", t.cut)
            out, info = make_transition("crossfade", before, after, num)
            info["fallback"] = f"{type(exc).__name__}: {exc}"
        if "fallback" in info:
            self._note(t.cut, f"cut at frame {t.cut}: {info['fallback']}; crossfade fallback", "crossfade")
        elif not t.reason:
            self.report.append({"cut": t.cut, "method": info["method"], "frames": [t.start, t.end - 1]})
        return [torch.from_numpy(np.ascontiguousarray(o.transpose(2, 0, 1))).float() for o in out]

    def close(self) -> None:
        self._cache.clear()
        self._thumbs.clear()
        if self._analyser is not None:
            self._analyser.close()
            self._analyser = None
