"""Train the CamVid segmentation model: ``vidfx train segment [options]``.

Class-weighted cross-entropy (void ignored), random scale/crop/flip/colour augmentation,
AdamW with warm-up and cosine decay, periodic checkpoints (resume with ``--resume``) and
model selection on the val split only (CamVid test is never read here). OUT/ gets
``args.json`` (the arguments, vidfx version, date), ``last.pt`` (atomic checkpoint),
``best.pt`` and snapshots (``vidfx.ops.weights`` files) and ``log.txt``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from vidfx.ops.loader import batch_stream
from vidfx.ops.weights import load_checkpoint, save_checkpoint, start_run

from .arch import CONFIGS, MBConvUNet, SegNetConfig
from .data import DEFAULT_CAMVID, NUM_CLASSES, VOID, AugmentConfig, augment, class_weights, load_split
from .metrics import confusion_matrix, iou_per_class
from .model import predict_logits, save_weights


def evaluate_split(model: MBConvUNet, images: list, labels: list, scale: float, device: torch.device) -> np.ndarray:
    """Confusion matrix of ``model`` on full-resolution images at processing ``scale``."""
    model.eval()
    conf = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    with torch.no_grad():
        for image, label in zip(images, labels):
            x = torch.from_numpy(image).permute(2, 0, 1).float().div(255).unsqueeze(0).to(device)
            pred = predict_logits(model, x, scale).argmax(1)[0].cpu().numpy()
            conf += confusion_matrix(pred, label, NUM_CLASSES, ignore=VOID)
    model.train()
    return conf


class AugmentedBatches(torch.utils.data.IterableDataset):
    """Endless augmented training batches ``(x, y)``: float32 (B, 3, h, w) and int64 (B, h, w).
    Each DataLoader worker draws from its own random stream."""

    def __init__(self, images: list, labels: list, aug: AugmentConfig, batch: int, seed: int):
        super().__init__()
        self.images, self.labels, self.aug, self.batch, self.seed = images, labels, aug, batch, seed

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        if info is not None:
            torch.set_num_threads(1)
        rng = np.random.default_rng(self.seed + 100003 * (info.id if info else 0))
        while True:
            batch = [
                augment(self.images[i], self.labels[i], self.aug, rng)
                for i in rng.integers(0, len(self.images), self.batch)
            ]
            yield (torch.from_numpy(np.stack([b[0] for b in batch])), torch.from_numpy(np.stack([b[1] for b in batch])))


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="vidfx train segment", description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default=str(DEFAULT_CAMVID), help="CamVid root (train/, val/, *annot/)")
    p.add_argument("--out", default="runs/segment", help="folder for checkpoints and the log")
    p.add_argument("--config", default="cpu", choices=sorted(CONFIGS), help="model size")
    p.add_argument("--width", type=int, help="override the config's width")
    p.add_argument("--depth", type=int, help="override the config's depth")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--iters", type=int, default=20000, help="schedule length in steps")
    p.add_argument(
        "--minutes",
        type=float,
        default=0,
        help="if > 0, the schedule follows wall-clock training time instead of --iters",
    )
    p.add_argument("--crop", default="256x192", help="training crop WxH")
    p.add_argument("--scale-min", type=float, default=0.45)
    p.add_argument("--scale-max", type=float, default=0.9)
    p.add_argument("--weight-power", type=float, default=0.5, help="class-weight softening (0 = none)")
    p.add_argument("--val-scales", default="0.5,0.75", help="processing scales tried on val")
    p.add_argument("--val-every", type=float, default=4.0, help="minutes between val/checkpoints")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=0, help="augmentation worker processes (0 = in the training process)")
    p.add_argument(
        "--snapshot-every",
        type=float,
        default=0,
        help="minutes between weights snapshots OUT/snap_<step>.pt (0 = none); "
        "with no val split at hand, select among them later with `vidfx eval segment --split val`",
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``vidfx train segment``; returns an exit code."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    device = torch.device(args.device)
    out = Path(args.out)
    say = start_run(out, args)

    train_images, train_labels, _ = load_split(args.dataset, "train")
    if (Path(args.dataset) / "val").is_dir():
        val_images, val_labels, _ = load_split(args.dataset, "val")
    else:  # e.g. a training machine that got only train/: snapshots are selected elsewhere
        val_images, val_labels = [], []
        say("no val split: no model selection here (use --snapshot-every)")
    weights = torch.from_numpy(class_weights(train_labels, args.weight_power)).to(device)
    say(f"train {len(train_images)} val {len(val_images)} class weights {np.round(weights.cpu().numpy(), 2).tolist()}")

    config = CONFIGS[args.config]
    overrides = {k: v for k, v in (("width", args.width), ("depth", args.depth)) if v}
    config = SegNetConfig(**{**config.to_dict(), **overrides})
    model = MBConvUNet(config).to(device)
    optim = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    crop_w, crop_h = (int(v) for v in args.crop.lower().split("x"))
    aug = AugmentConfig(crop_w=crop_w, crop_h=crop_h, scale_min=args.scale_min, scale_max=args.scale_max)
    scales = [float(s) for s in args.val_scales.split(",")]

    step, elapsed, best = 0, 0.0, {"miou": -1.0}
    if args.resume and (out / "last.pt").is_file():
        ck = load_checkpoint(out / "last.pt", device)
        model.load_state_dict(ck["model"])
        optim.load_state_dict(ck["optim"])
        step, elapsed, best = ck["step"], ck["elapsed"], ck["best"]
        say(f"resumed at step {step}, {elapsed / 60:.1f} min trained, best val {best}")
    say(f"config {config.to_dict()} params {sum(p.numel() for p in model.parameters()) / 1e6:.3f}M")

    def progress() -> float:
        if args.minutes > 0:
            return min(1.0, elapsed / (args.minutes * 60))
        return min(1.0, step / args.iters)

    def checkpoint() -> None:
        nonlocal best
        for s in scales if val_images else ():
            conf = evaluate_split(model, val_images, val_labels, s, device)
            iou = iou_per_class(conf)
            miou = float(np.nanmean(iou)) * 100
            say(f"step {step} val scale {s}: mIoU {miou:.2f} per-class {np.round(iou * 100, 1).tolist()}")
            if miou > best["miou"]:
                best = {"miou": miou, "scale": s, "step": step}
                save_weights(
                    out / "best.pt",
                    model,
                    {"scale": s, "val_miou": miou, "step": step, "train_minutes": round(elapsed / 60, 1)},
                )
                say(f"new best {best}")
        save_checkpoint(
            out / "last.pt",
            {
                "model": model.state_dict(),
                "optim": optim.state_dict(),
                "step": step,
                "elapsed": elapsed,
                "best": best,
                "args": vars(args),
            },
        )
        (out / "best.json").write_text(json.dumps(best))

    def snapshot() -> None:
        save_weights(out / f"snap_{step:06d}.pt", model, {"step": step, "train_minutes": round(elapsed / 60, 1)})

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    stream = AugmentedBatches(train_images, train_labels, aug, args.batch, args.seed + step)
    batches = batch_stream(stream, args.workers, prefetch=4)
    model.train()
    last_val = last_snap = elapsed
    warmup = 0.02
    loss_avg = None
    while progress() < 1.0:
        t0 = time.time()
        x, y = next(batches)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        frac = progress()
        lr = args.lr * (
            frac / warmup if frac < warmup else 0.5 * (1 + math.cos(math.pi * (frac - warmup) / (1 - warmup)))
        )
        for group in optim.param_groups:
            group["lr"] = lr
        logits = model(x)
        loss = F.cross_entropy(logits, y, weight=weights, ignore_index=VOID)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        step += 1
        elapsed += time.time() - t0
        loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
        if step % 50 == 0:
            say(f"step {step} loss {loss_avg:.4f} lr {lr:.5f} progress {frac:.3f} ({elapsed / 60:.1f} min)")
        if elapsed - last_val >= args.val_every * 60:
            checkpoint()
            last_val = elapsed
        if args.snapshot_every > 0 and elapsed - last_snap >= args.snapshot_every * 60:
            snapshot()
            last_snap = elapsed
    if args.snapshot_every > 0:
        snapshot()
    checkpoint()
    say(f"done: best {best}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
