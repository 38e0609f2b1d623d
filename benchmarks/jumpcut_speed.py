"""Seconds per jump-cut transition on CPU, split into keypoints / adaptation / synthesis.

    .venv/bin/python benchmarks/jumpcut_speed.py [--clip FILE] [--size 512] [--frames 12] [--threads 2]

A simulated cut in the middle of the clip (default: talking-head clip 2, resized to SIZE x SIZE;
``--size 0`` keeps the clip's own frame size, e.g. a 1080x1920 phone clip); prints a Markdown table.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from vidfx.jumpcut.synthesize import Synthesizer, make_transition
from vidfx.jumpcut.video import read_clip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clip", default="/work/shared/data/talking/2.mp4")
    ap.add_argument("--size", type=int, default=512, help="frames resized to SIZE x SIZE (0 = as they are)")
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--context", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--adapt-steps", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    frames, _ = read_clip(args.clip, size=args.size or None)
    size = f"{frames[0].shape[1]}x{frames[0].shape[0]}"
    frames = [f.astype(np.float32) / 255 for f in frames]
    s = len(frames) // 2 - args.frames // 2
    before = frames[s - 1 - args.context : s]
    after = frames[s + args.frames : s + args.frames + args.context + 1]
    t0 = time.perf_counter()
    synth = Synthesizer.load(adapt_steps=args.adapt_steps)
    load = time.perf_counter() - t0
    print("| size | frames | threads | adapt steps | keypoints s | adaptation s | synthesis s | total s |")
    print("|---|---|---|---|---|---|---|---|")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        make_transition("ours", before, after, args.frames, synthesizer=synth)
        total = time.perf_counter() - t0
        sec = synth.last_info["seconds"]
        print(
            f"| {size} | {args.frames} | {args.threads} | {synth.opt.adapt_steps} | {sec['keypoints']:.1f} | "
            f"{sec['adaptation']:.1f} | {sec['synthesis']:.1f} | {total:.1f} |"
        )
    print(f"(model + detector load: {load:.1f} s, once per run)")


if __name__ == "__main__":
    main()
