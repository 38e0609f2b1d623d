"""Does temporal smoothing keep accuracy? mIoU with and without smoothing at video frame rates.

CamVid's annotated frames are about 1 s apart, so running the smoother along them tests it on
motion 30x larger than between real consecutive frames. This benchmark makes short videos
with exact labels instead: each annotated frame is filmed by a slowly moving virtual camera
(pan 1.5-4 px/frame in a random direction, zoom drift up to 0.5%/frame, per-frame sensor
noise), the picture resampled bilinearly and the label map with nearest neighbour, both by
the same affine map. The ``segment`` node runs through the engine (``vidfx.apply``, labels
output) with ``smoothing: 0`` and the chosen smoothing; mIoU (11 classes, void ignored) is
accumulated over every clip frame but the first (where both modes are identical), and
flicker is measured on the same clips.

Nothing is tuned on this: the smoothing strength is the node's default. ``test`` is
evaluation only; ``val`` is the split used for selection.

    .venv/bin/python benchmarks/segment_equal_miou.py --splits val,test --frames 8 --threads 1
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
from segment_flicker import labels_of  # noqa: E402

from vidfx.ops.colour import grey_u8  # noqa: E402
from vidfx.segment.data import DEFAULT_CAMVID, NUM_CLASSES, VOID, load_split  # noqa: E402
from vidfx.segment.metrics import confusion_matrix, iou_per_class  # noqa: E402
from vidfx.segment.smoothing import flicker, flicker_motion  # noqa: E402

VIEW = 0.84  # the camera sees this fraction of the annotated frame (room to move without borders)


def camera_views(shape: tuple[int, int], frames: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Affine maps (2x3, annotated frame -> output frame) of a slow pan and zoom that stays inside."""
    h, w = shape
    speed = rng.uniform(1.5, 4.0)
    angle = rng.uniform(0, 2 * np.pi)
    step = speed * np.array([np.cos(angle), np.sin(angle)])
    zoom_step = rng.uniform(-0.005, 0.005)
    view = np.array([w, h]) * VIEW
    travel = step * (frames - 1)
    # Start so that the whole path of the window centre stays inside the frame.
    lo = view / 2 + np.maximum(0, -travel) + 2
    hi = np.array([w, h]) - view / 2 - np.maximum(0, travel) - 2
    centre = rng.uniform(lo, np.maximum(lo, hi))
    maps = []
    for t in range(frames):
        c = centre + step * t
        size = view / (1 + zoom_step * t)
        scale = w / size[0]
        top_left = c - size / 2
        maps.append(np.array([[scale, 0, -scale * top_left[0]], [0, scale, -scale * top_left[1]]], np.float32))
    return maps


def filmed_clip(
    image: np.ndarray, label: np.ndarray, frames: int, rng: np.random.Generator
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """RGB frames (uint8), their grey versions (for the flicker metric) and their exact label
    maps for one annotated frame."""
    h, w = label.shape
    pictures, labels = [], []
    for m in camera_views((h, w), frames, rng):
        pic = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        noisy = pic.astype(np.float32) + rng.normal(0, 2.0, pic.shape)
        pictures.append(np.clip(noisy, 0, 255).round().astype(np.uint8))
        labels.append(
            cv2.warpAffine(label, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=VOID)
        )
    return pictures, [grey_u8(f) for f in pictures], labels


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default=str(DEFAULT_CAMVID))
    p.add_argument("--splits", default="val,test")
    p.add_argument("--frames", type=int, default=8, help="frames per filmed clip")
    p.add_argument("--smoothing", type=float, default=0.6)
    p.add_argument("--limit", type=int, default=0, help="first N annotated frames per split (0 = all)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    print("| split | clips | smoothing | mIoU % | pixel acc. % | flicker % |")
    print("| --- | --- | --- | --- | --- | --- |")
    for split in args.splits.split(","):
        images, labels, _ = load_split(args.dataset, split)
        if args.limit:
            images, labels = images[: args.limit], labels[: args.limit]
        rng = np.random.default_rng(args.seed)
        # Filmed one at a time (the rng is only used here, so the order and the numbers are the
        # same as filming them all first) so memory holds one clip, not the whole split.
        clips = (filmed_clip(im, lb, args.frames, rng) for im, lb in zip(images, labels))
        settings = (0.0, args.smoothing)
        confs = {s: np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64) for s in settings}
        flickers: dict[float, list[float]] = {s: [] for s in settings}
        for pictures, greys, truth in clips:
            motion = flicker_motion(greys)  # once per clip, shared by both settings
            for smoothing in settings:
                predicted = labels_of(pictures, "camvid", smoothing, 0.0)
                for pred, lab in zip(predicted[1:], truth[1:]):
                    confs[smoothing] += confusion_matrix(pred, lab, NUM_CLASSES, ignore=VOID)
                flickers[smoothing].append(flicker(predicted, motion=motion))
        for smoothing in settings:
            conf = confs[smoothing]
            iou = iou_per_class(conf) * 100
            row = {
                "split": split,
                "clips": len(images),
                "frames": args.frames,
                "smoothing": smoothing,
                "miou": float(np.nanmean(iou)),
                "pixel_accuracy": float(np.trace(conf) / conf.sum() * 100),
                "flicker_pct": float(np.mean(flickers[smoothing]) * 100),
            }
            rows.append(row)
            print(
                f"| {split} | {len(images)} | {smoothing:g} | {row['miou']:.2f} | {row['pixel_accuracy']:.2f} | "
                f"{row['flicker_pct']:.2f} |",
                flush=True,
            )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
