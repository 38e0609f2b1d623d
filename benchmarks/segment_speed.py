"""Speed of the ``segment`` node at 480x360: model alone, and the whole node (model,
flow-guided smoothing, output) through the engine, for each mode.

    .venv/bin/python benchmarks/segment_speed.py [--threads 2] [--frames 30]

Frames are a CamVid val sequence (real pictures, 480x360); fps = frames / wall seconds.
"CPU ms/frame" is process CPU time per frame (all threads together): on a machine shared with
other jobs, 1000 / CPU ms (with --threads 1) is what one unloaded core would reach.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import vidfx  # noqa: E402
from vidfx.segment.data import DEFAULT_CAMVID  # noqa: E402
from vidfx.segment.model import load_model, predict_logits, weights_scale  # noqa: E402
from vidfx.segment.node import SegmentNode  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--weights", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    paths = sorted((DEFAULT_CAMVID / "val").glob("*.jpg"))[: args.frames]
    if paths:
        frames = [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in paths]
    else:
        frames = [(np.random.default_rng(i).random((360, 480, 3)) * 255).astype(np.uint8) for i in range(args.frames)]
    h, w = frames[0].shape[:2]
    tensors = [torch.from_numpy(f).permute(2, 0, 1).float() / 255 for f in frames]
    model = load_model(args.weights)
    scale = weights_scale(model)
    print(f"{len(frames)} frames {w}x{h}, torch threads {args.threads}, processing scale {scale}")
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'what':<42} {'fps':>7} {'ms/frame':>9} {'CPU ms/frame':>13}")
    cpu = [0.0]

    def report(what: str, seconds: float) -> None:
        cpu_ms = (time.process_time() - cpu[0]) / len(frames) * 1000
        print(
            f"{what:<42} {len(frames) / seconds:>7.1f} {seconds / len(frames) * 1000:>9.1f} {cpu_ms:>13.1f}", flush=True
        )

    with torch.no_grad():
        predict_logits(model, tensors[0][None], scale)  # warm-up
        t, cpu[0] = time.perf_counter(), time.process_time()
        for x in tensors:
            predict_logits(model, x[None], scale).argmax(1)
        report("model only (camvid)", time.perf_counter() - t)
    for mode, output, smoothing in [
        ("camvid", "overlay", 0.0),
        ("camvid", "overlay", 0.6),
        ("camvid", "alpha", 0.6),
        ("person", "alpha", 0.0),
        ("person", "alpha", 0.6),
    ]:
        extra = {"classes": ["sky"]} if (mode == "camvid" and output == "alpha") else {}
        node = SegmentNode(mode=mode, output=output, smoothing=smoothing, weights=args.weights, **extra)
        vidfx.apply(node, frames[:2])  # warm-up (model load)
        node = SegmentNode(mode=mode, output=output, smoothing=smoothing, weights=args.weights, **extra)
        t, cpu[0] = time.perf_counter(), time.process_time()
        vidfx.apply(node, frames)
        report(f"node {mode} output={output} smoothing={smoothing}", time.perf_counter() - t)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
