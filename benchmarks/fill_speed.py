"""Speed of the fill node: lazy decoding against full-canvas decoding, and seconds per frame.

1. Decoder time against hole area: the shipped generator on the working canvas of an
   854x480 frame (320x184 at the default ``work_size``), holes of 5/10/25/50/100 % of the
   canvas, one decoder call averaged over ``--repeat`` calls; the full-canvas decoder is the
   same decoder over every token. The encoder runs once per frame whatever the hole, and is
   reported apart.
2. Generator time per frame by sampler steps (1, 2, 4, 8, 50) at a 10 % hole: the encoder
   once plus one decoder call per step (a one-step student costs what 1 step costs).
3. The node at its default settings on the first ``--frames`` frames of bear.mp4 (854x480)
   with an object-shaped hole of 10 % of the frame moving over it: seconds per frame
   (propagation, generation, compositing; decoding and the mask clip excluded).

    .venv/bin/python benchmarks/fill_speed.py [--threads 2] [--frames 24]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import vidfx
from vidfx.diffusion.schedule import seconds_per_call
from vidfx.fill import evaluate as ev
from vidfx.fill.maskgen import ObjectShapes, object_track
from vidfx.fill.pipeline import TEACHER_WEIGHTS, build_lazyfill
from vidfx.ops.weights import load_model


def decoder_table(repeat: int) -> None:
    model, meta = load_model(TEACHER_WEIGHTS, "fill", build_lazyfill)
    h, w = 184, 320
    coarse = torch.rand(1, 3, h, w)
    t = torch.tensor([0.5])
    rows = []
    with torch.no_grad():
        full = model.prepare(coarse, torch.ones(1, 1, h, w), lazy=False)
        noisy = torch.randn(1, full["sel"].index.shape[1], 3 * model.cfg.patch**2)
        model.denoise(noisy, t, full)
        t0 = time.perf_counter()
        for _ in range(repeat):
            model.denoise(noisy, t, full)
        full_time = (time.perf_counter() - t0) / repeat
        t0 = time.perf_counter()
        for _ in range(repeat):
            model.encoder(coarse, torch.ones(1, 1, h, w))
        enc_time = (time.perf_counter() - t0) / repeat
        for frac in (0.05, 0.10, 0.25, 0.50, 1.00):
            hole = torch.zeros(1, 1, h, w)
            bh, bw = round(h * frac**0.5), round(w * frac**0.5)
            y0, x0 = (h - bh) // 2, (w - bw) // 2
            hole[..., y0 : y0 + bh, x0 : x0 + bw] = 1
            prep = model.prepare(coarse, hole)
            sel = prep["sel"]
            noisy = torch.randn(1, sel.index.shape[1], 3 * model.cfg.patch**2)
            model.denoise(noisy, t, prep)
            t0 = time.perf_counter()
            for _ in range(repeat):
                model.denoise(noisy, t, prep)
            lazy_time = (time.perf_counter() - t0) / repeat
            rows.append((frac, sel.count, lazy_time, full_time / lazy_time))
    tokens, steps = full["sel"].count, meta["steps"]
    print(f"decoder on a {w}x{h} canvas ({tokens} tokens), {steps} step(s) by default")
    print(f"encoder: {enc_time * 1000:.1f} ms, once per generated frame")
    print(f"{'hole':>6} {'tokens':>7} {'ms/call':>8} {'full/lazy':>9}")
    for frac, count, lazy_time, speedup in rows:
        print(f"{frac * 100:5.0f}% {count:7d} {lazy_time * 1000:8.2f} {speedup:8.1f}x")
    print(f"  full canvas: {full_time * 1000:.2f} ms/call")


def generator_table(repeat: int) -> None:
    """Generator time per frame (encoder once + the sampler's decoder calls) at a 10 % hole on
    the 320x184 canvas, by sampler steps: the speed side of the distillation table."""
    model, _ = load_model(TEACHER_WEIGHTS, "fill", build_lazyfill)
    h, w = 184, 320
    coarse, hole = torch.rand(1, 3, h, w), torch.zeros(1, 1, h, w)
    bh, bw = round(h * 0.1**0.5), round(w * 0.1**0.5)
    hole[..., (h - bh) // 2 : (h - bh) // 2 + bh, (w - bw) // 2 : (w - bw) // 2 + bw] = 1
    noise = torch.randn(1, 3, h, w)
    rows = []
    with torch.no_grad():
        for steps in (1, 2, 4, 8, 50):
            fresh = [torch.randn(1, 3, h, w) for _ in range(steps - 1)] if steps == 4 else None
            sec = seconds_per_call(lambda s=steps, f=fresh: model.generate(coarse, hole, noise, s, fresh=f), repeat)
            rows.append((steps, sec))
    one = rows[0][1]
    print("generator per frame, 10% hole on 320x184 (encoder + sampler)")
    print(f"{'steps':>5} {'ms':>8} {'x 1 step':>8}")
    for steps, sec in rows:
        print(f"{steps:5d} {sec * 1000:8.1f} {sec / one:8.1f}")


def node_speed(frames_count: int) -> None:
    frames = ev.load_clip(ev.DATA_ROOT / "clips" / "bear.mp4", frames_count, 854)
    t, h, w = frames.shape[:3]
    shapes = ObjectShapes.from_camvid(ev.DATA_ROOT / "camvid" / "valannot", max_files=40)
    holes = object_track(h, w, t, np.random.default_rng(0), shapes, area=(0.10, 0.10))
    masks = np.repeat(holes[..., None], 3, axis=-1).astype(np.float32)
    src = vidfx.Clip.from_frames(frames)
    mask = vidfx.Clip.from_frames(masks)
    out = src.fill(mask)
    t0 = time.perf_counter()
    n = sum(1 for _ in out)
    total = time.perf_counter() - t0
    t0 = time.perf_counter()
    sum(1 for _ in src)  # the source alone, subtracted
    base = time.perf_counter() - t0
    area = holes.mean() * 100
    print(f"fill node, defaults, {w}x{h}, {n} frames, hole {area:.1f}% of the frame: {(total - base) / n:.2f} s/frame")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--frames", type=int, default=24)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(time.strftime("%Y-%m-%d"), f"torch threads {args.threads}")
    decoder_table(args.repeat)
    generator_table(max(3, args.repeat // 4))
    node_speed(args.frames)


if __name__ == "__main__":
    main()
