"""Evaluate the CamVid model: ``vidfx eval segment --dataset PATH_TO_CAMVID [--json FILE]``.

Prints per-class IoU and mIoU over the 11 classes (void ignored) and the model's frames per
second at the dataset's resolution (480x360 for CamVid). ``--smoothing A`` runs the
flow-guided smoother along each CamVid sequence (consecutive annotated frames, in name
order) to check that smoothing leaves accuracy where it was.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..ops.colour import grey_u8
from .data import CLASS_NAMES, DEFAULT_CAMVID, NUM_CLASSES, VOID, load_split
from .metrics import confusion_matrix, iou_per_class
from .model import load_model, predict_lowres, weights_scale
from .smoothing import TemporalSmoother


def sequence_of(name: str) -> str:
    """CamVid sequence id of an image name (``0016E5_07965`` -> ``0016E5``)."""
    return name.rsplit("_", 1)[0]


def run(model, images, labels, names, scale: float, smoothing: float, device: torch.device) -> dict:
    """Confusion matrix, per-class IoU (percent), mIoU (percent) and model fps on a split."""
    conf = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    smoother = TemporalSmoother(smoothing)
    model_time = 0.0
    previous_seq = None
    with torch.no_grad():
        for image, label, name in zip(images, labels, names):
            x = torch.from_numpy(image).permute(2, 0, 1).float().div(255)[None].to(device)
            t0 = time.perf_counter()
            logits = predict_lowres(model, x, scale)
            if device.type == "cuda":
                torch.cuda.synchronize()
            model_time += time.perf_counter() - t0
            if smoothing > 0:
                if sequence_of(name) != previous_seq:
                    smoother.reset()
                previous_seq = sequence_of(name)
                small = F.interpolate(
                    x.cpu(), size=logits.shape[-2:], mode="bilinear", align_corners=False, antialias=True
                )[0]
                logits = smoother.step(logits[0].cpu(), grey_u8(small))[None]
            logits = F.interpolate(logits.to(device), size=label.shape, mode="bilinear", align_corners=False)
            pred = logits.argmax(1)[0].cpu().numpy()
            conf += confusion_matrix(pred, label, NUM_CLASSES, ignore=VOID)
    iou = iou_per_class(conf) * 100
    return {
        "miou": float(np.nanmean(iou)),
        "per_class": {n: (None if np.isnan(v) else float(v)) for n, v in zip(CLASS_NAMES, iou)},
        "fps": len(images) / model_time if model_time > 0 else 0.0,
        "pixel_accuracy": float(np.trace(conf) / max(conf.sum(), 1) * 100),
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``vidfx eval segment``; returns an exit code."""
    p = argparse.ArgumentParser(prog="vidfx eval segment", description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default=str(DEFAULT_CAMVID), help="CamVid root (with test/ and testannot/)")
    p.add_argument("--split", default="test", choices=("test", "val", "train"))
    p.add_argument("--weights", default=None, help="weights file (default: the shipped ones)")
    p.add_argument("--scale", type=float, default=0, help="processing scale (0 = the weights' default)")
    p.add_argument("--smoothing", type=float, default=0.0, help="temporal smoothing strength along sequences")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    try:
        images, labels, names = load_split(args.dataset, args.split)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    model = load_model(args.weights, device)
    scale = args.scale or weights_scale(model)
    h, w = labels[0].shape
    result = run(model, images, labels, names, scale, args.smoothing, device)
    result.update(
        {
            "split": args.split,
            "images": len(images),
            "resolution": f"{w}x{h}",
            "scale": scale,
            "smoothing": args.smoothing,
            "threads": args.threads,
            "device": str(device),
        }
    )
    print(f"CamVid {args.split}: {len(images)} images {w}x{h}, processing scale {scale}, smoothing {args.smoothing}")
    print(f"{'class':<12} {'IoU %':>7}")
    for name, iou in result["per_class"].items():
        print(f"{name:<12} {'n/a' if iou is None else f'{iou:7.2f}':>7}")
    print(f"{'mIoU':<12} {result['miou']:7.2f}")
    print(f"{'pixel acc':<12} {result['pixel_accuracy']:7.2f}")
    print(f"fps (model, {args.threads} threads, {device}): {result['fps']:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
