"""Held-out long-clip check for VSR weights and inference settings (model selection; Vid4 is never used here).

The held-out split of the training data (every 10th photo of train_hr/ filmed by a random
camera, and windows of clips/bear.mp4 and talking/3.mp4, none of them trained on), ``--frames``
frames per clip (30 by default), BI x4 (``--scale 2`` for x2 weights), upscaled through the
engine exactly like the node and the evaluation (``vidfx.apply`` with a ``vsr`` node: chunks of
``--chunks`` frames, 4 of them cross-faded with the next chunk): mean Y-PSNR for the full model and its per-frame mode,
stills and real videos apart. Training validates on short 7-frame clips; this checks the
long-chunk behaviour that inference depends on, and picks the node's chunk length.

    .venv/bin/python benchmarks/vsr_heldout.py WEIGHTS.pt [MORE.pt ...] [--frames 30] [--chunks 16,20] [--ensembles 1,4]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import vidfx  # noqa: E402
from vidfx.vsr.data import DEFAULT_DATA, ClipSampler, camera_clip, video_clip  # noqa: E402
from vidfx.vsr.degrade import degrade  # noqa: E402
from vidfx.vsr.metrics import psnr_y, quantize  # noqa: E402
from vidfx.vsr.node import VSRNode  # noqa: E402

OVERLAP = 4


def heldout_clips(frames: int, scale: int = 4) -> list[tuple[str, torch.Tensor, list[torch.Tensor]]]:
    """(kind, HR clip (T, 3, H, W), LR frames [(3, h, w)]) in 0..1 for every held-out still and two
    windows of each held-out video; the same clips for every run (fixed seed)."""
    rng = np.random.default_rng(77)
    sampler = ClipSampler(DEFAULT_DATA, "val")
    clips = [("stills", camera_clip(img, frames, 384, rng)) for img in sampler.stills]
    for v in sampler.videos:
        for _ in range(2):
            clips.append(("videos", video_clip(v, frames, min(240, v.shape[1], v.shape[2]) // 4 * 4, rng)))
    out = []
    for kind, hr in clips:
        lr = np.clip(degrade(hr, scale, "bi", rng), 0, 1)
        out.append(
            (
                kind,
                torch.from_numpy(np.ascontiguousarray(hr.transpose(0, 3, 1, 2))),
                [torch.from_numpy(np.ascontiguousarray(f.transpose(2, 0, 1))) for f in lr],
            )
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("weights", nargs="+")
    p.add_argument("--frames", type=int, default=30, help="frames per held-out clip")
    p.add_argument("--scale", type=int, default=4, choices=(2, 4), help="must match the weights")
    p.add_argument("--chunks", default="16", help="comma-separated node chunk lengths to compare")
    p.add_argument("--ensembles", default="1", help="comma-separated flip self-ensemble sizes (1, 2, 4)")
    p.add_argument("--modes", default="full,per-frame")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    clips = heldout_clips(args.frames, args.scale)
    modes = args.modes.split(",")
    kinds = ("stills", "videos")
    print(f"{args.frames}-frame held-out clips, Y-PSNR (dB)")
    print("| weights | chunk | ensemble | " + " | ".join(f"{k}, {m}" for k in kinds for m in modes) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in kinds for _ in modes) + " |")
    settings = [(int(c), int(e)) for c in args.chunks.split(",") for e in args.ensembles.split(",")]
    for path in args.weights:
        for chunk, ensemble in settings:
            res: dict[tuple[str, str], list[float]] = {}
            for kind, hr, lr in clips:
                for mode in modes:
                    on = mode == "full"
                    node = VSRNode(
                        weights=path,
                        scale=args.scale,
                        chunk=chunk,
                        overlap=min(OVERLAP, chunk - 1),
                        propagation=on,
                        attention=on,
                        ensemble=ensemble,
                    )
                    out = vidfx.apply(node, lr)
                    res.setdefault((kind, mode), []).append(
                        float(np.mean([psnr_y(quantize(o), h) for o, h in zip(out, hr)]))
                    )
            cells = [f"{np.mean(res[(k, m)]):.3f}" for k in kinds for m in modes]
            print(f"| {path} | {chunk} | {ensemble} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
