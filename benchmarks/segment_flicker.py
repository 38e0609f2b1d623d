"""Temporal stability of the ``segment`` node: label flicker with and without smoothing.

Flicker = fraction of pixels whose label changes between consecutive frames after motion
compensation (Farneback flow, a different estimator from the DIS flow the smoother uses;
occluded pixels left out), averaged over frame pairs. Runs the node through the engine
(``vidfx.apply``) on the real clips in ../shared/data/clips.

    .venv/bin/python benchmarks/segment_flicker.py [--frames 40] [--smoothing 0.6] [--modes camvid,person]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import vidfx  # noqa: E402
from vidfx.io.frames import rgb_frames  # noqa: E402
from vidfx.ops.colour import grey_u8  # noqa: E402
from vidfx.segment.node import SegmentNode  # noqa: E402
from vidfx.segment.smoothing import flicker, flicker_motion  # noqa: E402

CLIPS = Path("/work/shared/data/clips")


def read_clip(path: Path, max_frames: int, long_side: int) -> list[np.ndarray]:
    """First ``max_frames`` frames as RGB uint8, resized so the longer side is ``long_side``."""
    frames = []
    for rgb in rgb_frames(path, max_frames):
        h, w = rgb.shape[:2]
        s = long_side / max(h, w)
        if s != 1:
            rgb = cv2.resize(rgb, (round(w * s / 2) * 2, round(h * s / 2) * 2), interpolation=cv2.INTER_AREA)
        frames.append(rgb)
    return frames


def labels_of(frames: list[np.ndarray], mode: str, smoothing: float, scale: float) -> list[np.ndarray]:
    """Per-frame label maps from the node (labels output) run through the engine."""
    node = SegmentNode(mode=mode, output="labels", smoothing=smoothing, scale=scale)
    out = vidfx.apply(node, frames)
    return [(o[0] * 255).round().to(torch.uint8).numpy() for o in out]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--long-side", type=int, default=480)
    p.add_argument("--smoothing", type=float, default=0.6)
    p.add_argument("--scale", type=float, default=0.0, help="processing scale (0 = default)")
    p.add_argument("--modes", default="camvid,person")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not CLIPS.is_dir():
        print(f"clips not found at {CLIPS}")
        return 1
    rows = []
    print(f"{'clip':<22} {'mode':<7} {'frames':>6} {'flicker raw %':>14} {'smoothed %':>11} {'reduction':>10}")
    for mode in args.modes.split(","):
        raw_all, smooth_all = [], []
        for path in sorted(CLIPS.glob("*.mp4")):
            frames = read_clip(path, args.frames, args.long_side)
            greys = [grey_u8(f) for f in frames]
            motion = flicker_motion(greys)  # once per clip, shared by both label sequences
            raw = flicker(labels_of(frames, mode, 0.0, args.scale), motion=motion)
            smooth = flicker(labels_of(frames, mode, args.smoothing, args.scale), motion=motion)
            red = (1 - smooth / raw) * 100 if raw > 0 else 0.0
            raw_all.append(raw)
            smooth_all.append(smooth)
            rows.append(
                {
                    "clip": path.stem,
                    "mode": mode,
                    "frames": len(frames),
                    "raw": raw,
                    "smoothed": smooth,
                    "reduction_pct": red,
                }
            )
            print(
                f"{path.stem:<22} {mode:<7} {len(frames):>6} {raw * 100:>14.2f} {smooth * 100:>11.2f} {red:>9.1f}%",
                flush=True,
            )
        r, s = float(np.mean(raw_all)), float(np.mean(smooth_all))
        print(f"{'MEAN':<22} {mode:<7} {'':>6} {r * 100:>14.2f} {s * 100:>11.2f} {(1 - s / r) * 100:>9.1f}%")
        rows.append({"clip": "MEAN", "mode": mode, "raw": r, "smoothed": s, "reduction_pct": (1 - s / r) * 100})
    if args.json:
        Path(args.json).write_text(json.dumps({"smoothing": args.smoothing, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
