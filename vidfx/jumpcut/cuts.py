"""Where the cuts are: automatic detection, frame numbers, timecodes, OTIO timelines, CMX3600 EDLs.

A cut at frame ``c`` means frames ``c-1`` and ``c`` come from different takes (``c`` is the first
frame after the cut), so valid cuts are 1..num_frames-1.
"""

from __future__ import annotations

import json
import math
import re
from fractions import Fraction

import cv2
import numpy as np

from vidfx.core.errors import MediaError, ParamError
from vidfx.ops.colour import grey_u8

# Thumbnail-only detection (``detect_cuts``): the old ``cuts: auto``, kept as the baseline of
# ``vidfx eval jumpcut --detection --baseline``. The node's ``cuts: auto`` is ``detect.py`` (face
# keypoints, image and sound), whose cut score is scaled so that RATIO is its default threshold too.
THUMB = 64
RATIO = 3.5  # default ``sensitivity``: frame difference / local motion level here, cut score in detect.py
MIN_DIFF = 0.3  # grey levels (0..255): ignore spikes in a static picture
HARD_DIFF = 30.0  # grey levels: always a cut (a scene change)
NEIGHBOURHOOD = 6


# --- parsing ------------------------------------------------------------------------------------


def timecode_to_frame(tc: str, fps: Fraction) -> int:
    """``HH:MM:SS:FF`` (``;`` before FF = SMPTE drop-frame), ``HH:MM:SS.sss``, ``12.5s`` or ``120``."""
    tc = tc.strip()
    if re.fullmatch(r"\d+", tc):
        return int(tc)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)s", tc)
    if m:
        return int(round(float(m.group(1)) * fps))
    m = re.fullmatch(r"(\d+):(\d\d):(\d\d)([:;.])(\d+)", tc)
    if not m:
        raise ParamError(f"jumpcut.cuts: cannot read {tc!r} (frame number, 12.5s, HH:MM:SS:FF or HH:MM:SS.sss)")
    h, mi, s, sep, ff = int(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4), m.group(5)
    if sep == ".":
        return int(round((h * 3600 + mi * 60 + s + float("0." + ff)) * fps))
    nominal = int(round(float(fps)))
    frame = ((h * 60 + mi) * 60 + s) * nominal + int(ff)
    if sep == ";":  # drop-frame: 2 (4 at 60p) frame numbers skipped each minute except every 10th
        drop = int(round(nominal / 15))
        total_minutes = h * 60 + mi
        frame -= drop * (total_minutes - total_minutes // 10)
    return frame


def read_edl(path: str, fps: Fraction) -> list[int]:
    """Cut frames of a CMX3600 EDL: the record-in of every event after the first, relative to the
    first event's record-in."""
    events = []
    tc = r"(\d\d:\d\d:\d\d[:;]\d\d)"
    pattern = re.compile(rf"^\s*(\d+)\s+\S+\s+\S+\s+\S+(?:\s+\d+)?\s+{tc}\s+{tc}\s+{tc}\s+{tc}")
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                m = pattern.match(line)
                if m:
                    events.append(timecode_to_frame(m.group(4), fps))
    except OSError as exc:
        raise MediaError(f"jumpcut.cuts: cannot read EDL {path}: {exc}") from exc
    if not events:
        raise MediaError(f"jumpcut.cuts: no events found in EDL {path}")
    events.sort()
    return [e - events[0] for e in events[1:]]


def read_otio(path: str, fps: Fraction) -> list[int]:
    """Cut frames of an OpenTimelineIO timeline: the boundaries between items of the first video
    track. Uses ``opentimelineio`` when installed; otherwise (or if it rejects the file) reads the
    OTIO JSON directly."""
    try:
        import opentimelineio as otio
    except ImportError:
        otio = None
    if otio is not None:
        try:
            timeline = otio.adapters.read_from_file(path)
            tracks = [t for t in timeline.tracks if t.kind == otio.schema.TrackKind.Video]
            if tracks:
                items = [it for it in tracks[0] if not isinstance(it, otio.schema.Transition)]
                return _boundaries([it.duration().rescaled_to(float(fps)).value for it in items])
        except Exception:  # fall through to the plain JSON reader
            pass
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise MediaError(f"jumpcut.cuts: cannot read OTIO timeline {path}: {exc}") from exc
    return otio_json_cuts(data, fps, path)


def otio_json_cuts(data: dict, fps: Fraction, path: str = "timeline") -> list[int]:
    """Cut frames from a parsed OTIO JSON document (first video track of the timeline's stack)."""
    stack = data.get("tracks", {}) if isinstance(data, dict) else {}
    tracks = [t for t in stack.get("children", []) if t.get("kind", "Video") == "Video"]
    if not tracks:
        raise MediaError(f"jumpcut.cuts: {path} has no video track")
    durations = []
    for item in tracks[0].get("children", []):
        if item.get("OTIO_SCHEMA", "").startswith("Transition"):
            continue
        dur = (item.get("source_range") or {}).get("duration") or {}
        if "value" not in dur:
            continue
        durations.append(float(dur["value"]) * float(fps) / float(dur.get("rate", fps)))
    return _boundaries(durations)


def _boundaries(durations: list[float]) -> list[int]:
    pos, cuts = 0.0, []
    for d in durations[:-1]:
        pos += d
        cuts.append(int(round(pos)))
    return cuts


def parse_cuts(items: list[str], fps: Fraction) -> list[int] | None:
    """The ``cuts`` parameter as frame numbers; ``None`` means ``auto``.

    Items: ``auto``; frame numbers; timecodes; or a path to a ``.otio``/``.json`` timeline or an
    ``.edl`` (relative to the current directory).
    """
    if not items or [i.strip().lower() for i in items] == ["auto"]:
        return None
    cuts: list[int] = []
    for item in items:
        item = str(item).strip()
        low = item.lower()
        if low == "auto":
            raise ParamError("jumpcut.cuts: 'auto' cannot be mixed with explicit cuts")
        if low.endswith(".edl"):
            cuts += read_edl(item, fps)
        elif low.endswith((".otio", ".json")):
            cuts += read_otio(item, fps)
        else:
            cuts.append(timecode_to_frame(item, fps))
    return sorted(set(cuts))


# --- auto detection -----------------------------------------------------------------------------


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """Small grey picture used for cut detection (input uint8 or float 0..1 RGB)."""
    img = rgb if rgb.dtype == np.uint8 else np.clip(rgb * 255.0, 0, 255).astype(np.uint8)
    grey = grey_u8(img)
    return cv2.resize(grey, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32)


def frame_differences(thumbs: list[np.ndarray]) -> np.ndarray:
    """d[k] = mean |thumb k - thumb k-1| (d[0] = 0)."""
    return np.array([0.0] + [float(np.abs(thumbs[k] - thumbs[k - 1]).mean()) for k in range(1, len(thumbs))])


def cut_score(d: np.ndarray, k: int) -> float:
    """How much the change into frame ``k`` stands out from the motion around it."""
    if k < 1 or k >= len(d):
        return 0.0
    neighbours = [d[j] for j in (k - 1, k + 1) if 1 <= j < len(d)]
    near = float(np.mean(neighbours)) if neighbours else 0.0
    window = [d[j] for j in range(k - NEIGHBOURHOOD, k + NEIGHBOURHOOD + 1) if 1 <= j < len(d) and abs(j - k) > 1]
    level = max(near, float(np.median(window)) if window else near)
    return float(d[k] / (level + 0.05))


def detect_cuts(thumbs: list[np.ndarray], ratio: float = RATIO) -> list[int]:
    """Jump cuts (and hard scene cuts) in a run of frames given as ``thumbnail``s."""
    d = frame_differences(thumbs)
    cuts = []
    for k in range(1, len(d)):
        if d[k] >= HARD_DIFF or (d[k] >= MIN_DIFF and cut_score(d, k) >= ratio):
            cuts.append(k)
    return cuts


def check_cuts(cuts: list[int], num_frames: int, length: int) -> tuple[list[int], list[tuple[int, str]]]:
    """Split cuts into usable ones and (cut, reason) pairs that get a crossfade fallback or are dropped.

    A cut at the first or last frame is outside the clip (dropped, reported); two cuts closer than
    the transition length (also when one of them is too near the clip's ends for a transition)
    both fall back to a crossfade between the outer end frames.
    """
    usable, bad = [], []
    half = length // 2
    for c in cuts:
        if c <= 0 or c >= num_frames:
            bad.append((c, f"cut at frame {c} is at or outside the clip's ends (0..{num_frames - 1}); ignored"))
        elif c - half < 1 or c + (length - half) >= num_frames:
            bad.append(
                (
                    c,
                    f"cut at frame {c} is too close to the clip's start or end for a {length}-frame "
                    "transition; crossfade over the frames available",
                )
            )
        else:
            usable.append(c)
    close = set()
    # a usable cut next to another one, or next to one too near the clip's ends (whose crossfade
    # would overlap its transition), falls back too
    inside = sorted(set(usable) | {c for c, _ in bad if 0 < c < num_frames})
    for a, b in zip(inside, inside[1:]):
        if b - a < length:
            close.update(c for c in (a, b) if c in usable)
    for c in sorted(close):
        bad.append(
            (c, f"cut at frame {c} is closer than the transition length ({length}) to another cut; crossfade fallback")
        )
    return [c for c in usable if c not in close], bad


def seconds_to_frames(seconds: float, fps: Fraction) -> int:
    """A duration in seconds as a whole, even-rounded number of frames (at least 2)."""
    return max(2, int(math.floor(seconds * float(fps) + 0.5)))
