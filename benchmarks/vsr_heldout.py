"""Held-out long-clip check for VSR weights (model selection; Vid4 is never used here).

The held-out split of the training data (every 10th photo of train_hr/ filmed by a random
camera, and windows of clips/bear.mp4 and talking/3.mp4, none of them trained on), 30 frames
per clip, BI x4, upscaled in chunks of 16 like the evaluation and the node: mean Y-PSNR for the
full model and its per-frame mode, stills and real videos apart. Training validates on short
7-frame clips; this checks the long-chunk behaviour that inference depends on.

    .venv/bin/python benchmarks/vsr_heldout.py WEIGHTS.pt [MORE.pt ...]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vidfx.vsr.data import DEFAULT_DATA, ClipSampler, camera_clip, video_clip  # noqa: E402
from vidfx.vsr.degrade import degrade  # noqa: E402
from vidfx.vsr.flow import DISFlow  # noqa: E402
from vidfx.vsr.metrics import psnr_y, quantize  # noqa: E402
from vidfx.vsr.node import upscale_clip  # noqa: E402
from vidfx.vsr.weights import load_weights  # noqa: E402

FRAMES, CHUNK = 30, 16


def main(paths: list[str]) -> int:
    torch.set_num_threads(1)
    rng = np.random.default_rng(77)
    sampler = ClipSampler(DEFAULT_DATA, "val")
    clips = [("stills", camera_clip(img, FRAMES, 384, rng)) for img in sampler.stills]
    for v in sampler.videos:
        for _ in range(2):
            clips.append(("videos", video_clip(v, FRAMES, min(240, v.shape[1], v.shape[2]) // 4 * 4, rng)))
    lrs = [np.clip(degrade(c, 4, "bi", rng), 0, 1) for _, c in clips]
    flow = DISFlow()
    print("| weights | stills, full | stills, per-frame | videos, full | videos, per-frame |")
    print("| --- | --- | --- | --- | --- |")
    for path in paths:
        model, _ = load_weights(path)
        res: dict[tuple[str, str], list[float]] = {}
        for (kind, hr), lr in zip(clips, lrs):
            lr_t = torch.from_numpy(np.ascontiguousarray(lr.transpose(0, 3, 1, 2)))
            hr_t = torch.from_numpy(np.ascontiguousarray(hr.transpose(0, 3, 1, 2)))
            for mode in ("full", "per-frame"):
                on = mode == "full"
                out = torch.cat([upscale_clip(model, lr_t[a:a + CHUNK], flow, 0, propagate=on, attend=on)
                                 for a in range(0, FRAMES, CHUNK)])
                res.setdefault((kind, mode), []).append(
                    float(np.mean([psnr_y(quantize(out[t]), hr_t[t]) for t in range(FRAMES)])))
        cells = [f"{np.mean(res[(k, m)]):.3f}" for k in ("stills", "videos") for m in ("full", "per-frame")]
        print(f"| {path} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
