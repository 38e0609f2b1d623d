"""Train the generative fill model: ``vidfx train fill [options]``.

The decoder learns to denoise the residual between the truth and a Telea fill inside the
hole tokens (x0-prediction, cosine schedule; loss on every pixel of a hole token, hole
pixels weighted up). AdamW with warm-up and cosine decay, an exponential moving average of
the weights (what is evaluated and shipped), checkpoints every few minutes (``--resume``
continues from OUT/last.pt), and model selection on CamVid val only: masked PSNR of the
sampler at ``--val-steps`` against the truth, on fixed holes. ``--device cuda`` trains on a
GPU. OUT/ gets ``args.json``, ``last.pt``, ``best.pt`` (a vidfx weights file) and ``log.txt``.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from vidfx.diffusion.schedule import add_noise
from vidfx.ops.loader import batch_stream
from vidfx.ops.weights import add_run_options, load_checkpoint, save_checkpoint, save_weights, start_run

from ..ops.features import frechet_distance, patch_features
from .data import DATA, CropConfig, FillBatches, make_example, training_pictures, validation_pictures
from .maskgen import ObjectShapes
from .model import LazyFill, LazyFillConfig, gather_tokens, patchify

FAMILY = "fill"
HOLE_WEIGHT = 4.0  # hole pixels count this much more than the known pixels of a hole token


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="vidfx train fill", description=__doc__.split("\n")[0])
    p.add_argument("--config", default="cpu", choices=("cpu", "paper"), help="model size")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=96)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--val-steps", default="1,4", help="sampler steps tried on validation")
    p.add_argument("--workers", type=int, default=0, help="data worker processes")
    add_run_options(p, out="runs/fill", data=str(DATA), iters=30000, val_every=5.0)
    return p.parse_args(argv)


def diffusion_loss(model: LazyFill, truth: torch.Tensor, hole: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
    """The training loss of one batch: weighted MSE of the predicted clean residual tokens.

    Shape: truth, coarse :math:`(B, 3, S, S)`; hole :math:`(B, 1, S, S)`.
    """
    cfg = model.cfg
    # random position offsets: the node's canvases are larger than the training crops
    offset = torch.randint(0, 48, (truth.shape[0], 2), device=truth.device)
    prep = model.prepare(coarse, hole, offset=offset)
    sel = prep["sel"]
    x0 = gather_tokens(patchify((truth - coarse) * cfg.residual_scale, cfg.patch), sel)  # type: ignore[arg-type]
    t = torch.rand(truth.shape[0], device=truth.device) ** 0.8  # a little more weight on noisy times
    noisy = add_noise(x0, t, torch.randn_like(x0))
    pred = model.denoise(noisy, t, prep)
    hole_px = prep["mask"].repeat(1, 1, 3)  # type: ignore[union-attr]  # (B, K, 3pp), channel-major like patchify
    weight = (1 + (HOLE_WEIGHT - 1) * hole_px) * sel.valid.unsqueeze(-1)  # type: ignore[union-attr]
    return ((pred - x0) ** 2 * weight).sum() / weight.sum()


def validation_set(
    pictures: list[np.ndarray], shapes: ObjectShapes, crop: int, per_picture: int = 1
) -> list[tuple[torch.Tensor, ...]]:
    """Fixed validation examples (same holes every time), ``per_picture`` per picture."""
    rng = np.random.default_rng(1234)
    out: list[tuple[torch.Tensor, ...]] = []
    for pic in [p for p in pictures for _ in range(per_picture)]:
        truth, hole, coarse = make_example(pic, rng, shapes, CropConfig(size=crop, long_side=(300, 300)))
        out.append(
            (
                torch.from_numpy(truth).permute(2, 0, 1)[None],
                torch.from_numpy(hole)[None, None].float(),
                torch.from_numpy(coarse).permute(2, 0, 1)[None],
            )
        )
    return out


FD_WINDOW = 64  # side of the window around each validation hole whose features the FD compares


def hole_windows(images: torch.Tensor, holes: torch.Tensor, side: int = FD_WINDOW) -> torch.Tensor:
    """A ``side`` x ``side`` window of each image centred on its hole's bounding box (clamped
    inside the image).

    Shape: images :math:`(B, 3, S, S)`, holes :math:`(B, 1, S, S)` -> :math:`(B, 3, side, side)`.
    """
    out = []
    for img, hole in zip(images, holes, strict=True):
        ys, xs = torch.nonzero(hole[0] > 0.5, as_tuple=True)
        h, w = img.shape[-2:]
        cy = int((ys.min() + ys.max()) // 2) if len(ys) else h // 2
        cx = int((xs.min() + xs.max()) // 2) if len(xs) else w // 2
        y0 = min(max(cy - side // 2, 0), h - side)
        x0 = min(max(cx - side // 2, 0), w - side)
        out.append(img[:, y0 : y0 + side, x0 : x0 + side])
    return torch.stack(out)


@torch.no_grad()
def validate_quality(
    model: LazyFill, examples: list, steps: int, device: torch.device, renoise: bool = False
) -> dict[str, float]:
    """Masked PSNR (``psnr``; ``telea``: that of the coarse Telea fill) and the Fréchet distance
    (``fd``, :mod:`vidfx.ops.features`) between windows around the filled holes and the same
    windows of the truth, ``steps`` sampler steps (DDIM, or with ``renoise`` the sampler of a
    multi-step DMD2 student)."""
    model.eval()
    err = err_coarse = count = 0.0
    gen = torch.Generator().manual_seed(0)
    filled, truths = [], []
    for truth, hole, coarse in examples:
        noise = torch.randn(truth.shape, generator=gen)
        fresh = [torch.randn(truth.shape, generator=gen).to(device) for _ in range(steps - 1)] if renoise else None
        out = model.generate(coarse.to(device), hole.to(device), noise.to(device), steps, fresh=fresh).cpu()
        m = hole.expand_as(truth)
        err += float(((out - truth) ** 2 * m).sum())
        err_coarse += float(((coarse - truth) ** 2 * m).sum())
        count += float(m.sum())
        filled.append(hole_windows(out, hole))
        truths.append(hole_windows(truth, hole))
    model.train()

    def psnr(e: float) -> float:
        return 10 * math.log10(count / max(e, 1e-12))

    fd = frechet_distance(patch_features(torch.cat(filled)), patch_features(torch.cat(truths)))
    return {"psnr": psnr(err), "telea": psnr(err_coarse), "fd": fd}


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``vidfx train fill``; returns an exit code."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    device = torch.device(args.device)
    out = Path(args.out)
    say = start_run(out, args)

    data = Path(args.data)
    pictures = training_pictures(data)
    train_shapes = ObjectShapes.from_camvid(data / "camvid" / "trainannot")
    val_shapes = ObjectShapes.from_camvid(data / "camvid" / "valannot")
    val = validation_set(validation_pictures(data), val_shapes, args.crop)
    val_steps = [int(s) for s in args.val_steps.split(",")]
    say(f"{len(pictures)} training pictures, {len(val)} validation examples")

    cfg = LazyFillConfig.paper() if args.config == "paper" else LazyFillConfig()
    model = LazyFill(cfg).to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    optim = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    step, elapsed, best = 0, 0.0, {"psnr": -1.0}
    if args.resume and (out / "last.pt").is_file():
        ck = load_checkpoint(out / "last.pt", device)
        model.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        optim.load_state_dict(ck["optim"])
        step, elapsed, best = ck["step"], ck["elapsed"], ck["best"]
        say(f"resumed at step {step}, {elapsed / 60:.1f} min trained, best {best}")
    say(f"config {cfg.to_dict()} params {sum(p.numel() for p in model.parameters()) / 1e6:.3f}M")

    def progress() -> float:
        if args.minutes > 0:
            return min(1.0, elapsed / (args.minutes * 60))
        return min(1.0, step / args.iters)

    def checkpoint() -> None:
        nonlocal best
        scores = {s: validate_quality(ema, val, s, device) for s in val_steps}
        line = " ".join(f"{s} steps {q['psnr']:.2f} dB" for s, q in scores.items())
        say(f"step {step} val masked PSNR: {line} (telea {next(iter(scores.values()))['telea']:.2f} dB)")
        top_steps, top = max(((s, q["psnr"]) for s, q in scores.items()), key=lambda sp: sp[1])
        if top > best["psnr"]:
            best = {"psnr": round(top, 3), "steps": top_steps, "step": step}
            meta = {
                "val_psnr_masked": round(top, 3),
                "steps": top_steps,
                "step": step,
                "train_minutes": round(elapsed / 60, 1),
            }
            save_weights(out / "best.pt", FAMILY, ema, cfg.to_dict(), meta)
            say(f"new best {best}")
        state = {"model": model.state_dict(), "ema": ema.state_dict(), "optim": optim.state_dict()}
        save_checkpoint(out / "last.pt", {**state, "step": step, "elapsed": elapsed, "best": best, "args": vars(args)})

    stream = FillBatches(pictures, train_shapes, args.batch, CropConfig(size=args.crop), args.seed + step)
    batches = batch_stream(stream, args.workers, prefetch=4)
    model.train()
    last_val = elapsed
    warmup = 0.02
    loss_avg = None
    while progress() < 1.0:
        t0 = time.time()
        truth, hole, coarse = (x.to(device, non_blocking=True) for x in next(batches))
        frac = progress()
        lr = args.lr * (
            frac / warmup if frac < warmup else 0.5 * (1 + math.cos(math.pi * (frac - warmup) / (1 - warmup)))
        )
        for group in optim.param_groups:
            group["lr"] = lr
        loss = diffusion_loss(model, truth, hole, coarse)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        with torch.no_grad():
            decay = min(args.ema, (1 + step) / (10 + step))
            for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
                pe.lerp_(pm, 1 - decay)
        step += 1
        elapsed += time.time() - t0
        value = float(loss.detach())
        loss_avg = value if loss_avg is None else 0.98 * loss_avg + 0.02 * value
        if step % 100 == 0:
            say(f"step {step} loss {loss_avg:.4f} lr {lr:.2e} {elapsed / step * 1000:.0f} ms/step")
        if elapsed - last_val >= args.val_every * 60:
            checkpoint()
            last_val = elapsed
    checkpoint()
    say(f"done: {step} steps, {elapsed / 60:.1f} min, best {best}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
