"""``vidfx train vsr``: train the VSR network in two stages (fidelity, then GAN).

Stage 1 (fidelity): Charbonnier loss. With probability ``--p-frame`` a step runs the
network without propagation and attention (the per-frame ablation shares the weights,
so both modes are trained). Stage 2 (GAN): Charbonnier + non-saturating GAN loss with R1
penalty + discriminator feature matching (our LPIPS substitute), starting from the best
fidelity weights.

Progress goes to stdout. ``last.pt`` (full state) is written every few minutes and at
the end, so ``--resume`` continues where a run stopped. ``best_fidelity.pt`` (selected on
the held-out split of train_hr/clips/talking, never on Vid4) and ``detail.pt`` (end of
stage 2) are weights files loadable by the node.

Example (the shipped tiny x4): ``vidfx train vsr --out runs/vsr_tiny_x4 --config tiny
--scale 4 --degradation bi --fidelity-minutes 70 --gan-minutes 0``.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .arch import VideoSR, grow
from .config import VSRConfig, make_config
from .data import DEFAULT_DATA, ClipSampler, make_batch, validation_set
from .flow import DISFlow
from .losses import (PatchDiscriminator, charbonnier, d_loss_nonsaturating, feature_matching,
                     g_loss_nonsaturating, r1_penalty)
from .metrics import psnr_y, quantize
from .resize import imresize
from .weights import load_weights, save_weights


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="vidfx train vsr", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="run folder (checkpoints, weights, log)")
    p.add_argument("--config", default="tiny", choices=["tiny", "base", "paper"])
    p.add_argument("--scale", type=int, default=4, choices=[2, 4])
    p.add_argument("--degradation", default="bi",
                   help="bi, bd, realistic, or a mix like 'bi:0.6,bd:0.2,realistic:0.2'")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="shared data folder (train_hr/, clips/, talking/)")
    p.add_argument("--frames", type=int, default=6, help="frames per training clip")
    p.add_argument("--lr-crop", type=int, default=40, help="LR crop size in pixels")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3, help="stage 1 peak learning rate")
    p.add_argument("--fidelity-steps", type=int, default=100000)
    p.add_argument("--fidelity-minutes", type=float, default=0, help="stage 1 time budget (0 = steps only)")
    p.add_argument("--gan-steps", type=int, default=100000)
    p.add_argument("--gan-minutes", type=float, default=0, help="stage 2 time budget (0 with --gan-steps 0 = skip)")
    p.add_argument("--p-frame", type=float, default=0.2, help="share of per-frame (ablation) steps")
    p.add_argument("--p-video", type=float, default=0.3, help="share of real-video clips")
    p.add_argument("--val-minutes", type=float, default=5.0)
    p.add_argument("--ckpt-minutes", type=float, default=3.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=1, help="data worker processes (0 = in the training process)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--init", default=None,
                   help="start from this weights file (its config replaces --config/--scale); fine-tuning")
    p.add_argument("--grow", default="",
                   help="with --init: grow to these residual block counts (totals, not increments), "
                        "e.g. prop_blocks=2,lr_dec_blocks=3 (new blocks start as the identity)")
    p.add_argument("--cache", default=None, help="cache folder for decoded videos (default OUT/cache)")
    return p.parse_args(argv)


def parse_mix(text: str) -> tuple[list[str], list[float]]:
    """'bi:0.6,bd:0.4' -> (['bi', 'bd'], [0.6, 0.4]); 'bi' -> (['bi'], [1.0])."""
    modes, weights = [], []
    for part in text.split(","):
        name, _, w = part.partition(":")
        if name not in ("bi", "bd", "realistic"):
            raise SystemExit(f"vidfx train vsr: unknown degradation {name!r}")
        modes.append(name)
        weights.append(float(w) if w else 1.0)
    total = sum(weights)
    return modes, [w / total for w in weights]


def parse_grow(text: str) -> dict[str, int]:
    """``"prop_blocks=1,lr_dec_blocks=1"`` -> ``{"prop_blocks": 1, "lr_dec_blocks": 1}``."""
    out = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            raise SystemExit(f"vidfx train vsr: --grow expects NAME=COUNT items, got {item!r}")
        out[key.strip()] = int(value)
    return out


@torch.no_grad()
def validate(model: VideoSR, batches, device: torch.device) -> dict:
    """Mean Y-PSNR on the held-out clips: full model, per-frame ablation and bicubic."""
    model.eval()
    res = {"full": [], "per_frame": [], "bicubic": []}
    for b in batches:
        lr, hr = b.lr.to(device), b.hr[0]
        full = model(lr, b.flow_prev.to(device), b.flow_next.to(device))[0].cpu()
        single = model(lr, propagate=False, attend=False)[0].cpu()
        bic = imresize(b.lr[0], model.cfg.scale)
        for t in range(hr.shape[0]):
            res["full"].append(psnr_y(quantize(full[t]), hr[t]))
            res["per_frame"].append(psnr_y(quantize(single[t]), hr[t]))
            res["bicubic"].append(psnr_y(quantize(bic[t]), hr[t]))
    model.train()
    return {k: float(np.mean(v)) for k, v in res.items()}


class BatchStream(torch.utils.data.IterableDataset):
    """Endless training batches (made in a DataLoader worker, beside the training step)."""

    def __init__(self, sampler: ClipSampler, frames: int, size: int, batch: int, scale: int,
                 modes: list[str], weights: list[float], seed: int):
        super().__init__()
        self.sampler, self.frames, self.size, self.batch = sampler, frames, size, batch
        self.scale, self.modes, self.weights, self.seed = scale, modes, weights, seed

    def __iter__(self):
        torch.set_num_threads(1)
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng(self.seed + (info.id if info else 0))
        flow = DISFlow()
        while True:
            clips = [self.sampler.sample(self.frames, self.size, rng) for _ in range(self.batch)]
            ms = list(rng.choice(self.modes, size=self.batch, p=self.weights))
            b = make_batch(clips, self.scale, ms, rng, flow)
            yield {"lr": b.lr, "hr": b.hr, "flow_prev": b.flow_prev, "flow_next": b.flow_next}


def lr_factor(progress: float, warmup: float = 0.02) -> float:
    """Linear warm-up, then cosine decay to 1% of the peak."""
    if progress < warmup:
        return max(progress / warmup, 0.01)
    p = min((progress - warmup) / (1 - warmup), 1.0)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * p))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache) if args.cache else out / "cache"
    root = Path(args.data)
    if not (root / "train_hr").is_dir():
        print(f"vidfx train vsr: no train_hr/ in {root}", file=sys.stderr)
        return 2
    if args.grow and not args.init:
        print("vidfx train vsr: --grow needs --init (the weights to grow)", file=sys.stderr)
        return 2
    modes, weights = parse_mix(args.degradation)
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)

    cfg = make_config(args.config, args.scale)
    model = VideoSR(cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.99))
    disc = PatchDiscriminator().to(device)
    opt_d = torch.optim.Adam(disc.parameters(), lr=2e-4, betas=(0.0, 0.99))
    state = {"stage": 1, "step": 0, "elapsed": 0.0, "best": -1.0, "history": []}
    if args.init:
        model, _ = load_weights(Path(args.init), device)
        if args.grow:
            model = grow(model, **parse_grow(args.grow))
        cfg = model.cfg
        opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.99))
        print(f"initialised from {args.init}" + (f", grown: {args.grow}" if args.grow else ""), flush=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    last = out / "last.pt"
    if args.resume and last.exists():
        ck = torch.load(last, map_location=device, weights_only=False)
        cfg = VSRConfig.from_dict(ck["config"])
        model = VideoSR(cfg).to(device)
        model.load_state_dict(ck["model"])
        opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.99))
        opt.load_state_dict(ck["opt"])
        disc.load_state_dict(ck["disc"])
        opt_d.load_state_dict(ck["opt_d"])
        state = ck["state"]
        rng = np.random.default_rng(args.seed + 1000 * state["step"] + state["stage"])
        print(f"resumed from {last}: stage {state['stage']} step {state['step']}", flush=True)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model {args.config} x{cfg.scale}: {n_params} parameters; degradation {args.degradation}; "
          f"device {device}", flush=True)

    t0 = time.time()
    sampler = ClipSampler(root, "train", p_video=args.p_video, cache_dir=cache)
    val = validation_set(root, cfg.scale, cache_dir=cache)
    print(f"data: {len(sampler.stills)} stills, {len(sampler.videos)} videos; {len(val)} validation clips "
          f"({time.time() - t0:.0f}s)", flush=True)

    def save_last() -> None:
        ck = {"config": cfg.to_dict(), "model": model.state_dict(), "opt": opt.state_dict(),
              "disc": disc.state_dict(), "opt_d": opt_d.state_dict(), "state": state}
        torch.save(ck, last.with_suffix(".tmp"))
        os.replace(last.with_suffix(".tmp"), last)

    stream = BatchStream(sampler, args.frames, args.lr_crop * cfg.scale, args.batch, cfg.scale,
                         modes, weights, args.seed + 7919 * state["step"] + state["stage"])
    loader = iter(torch.utils.data.DataLoader(stream, batch_size=None, num_workers=args.workers,
                                              prefetch_factor=2 if args.workers else None,
                                              persistent_workers=bool(args.workers)))

    def next_batch():
        b = next(loader)
        return (b["lr"].to(device), b["hr"].to(device), b["flow_prev"].to(device), b["flow_next"].to(device))

    model.train()
    stage_start = time.time() - state["elapsed"]
    last_ckpt = last_val = time.time()
    losses: list[float] = []
    while True:
        elapsed = time.time() - stage_start
        if state["stage"] == 1:
            budget = args.fidelity_minutes * 60
            progress = state["step"] / max(args.fidelity_steps, 1)
            if budget > 0:
                progress = max(progress, elapsed / budget)
        else:
            budget = args.gan_minutes * 60
            progress = state["step"] / max(args.gan_steps, 1) if args.gan_steps else 1.0
            if budget > 0:
                progress = max(progress, elapsed / budget) if args.gan_steps else elapsed / budget
        if progress >= 1.0:
            if state["stage"] == 1:
                v = validate(model, val, device)
                state["history"].append({"stage": 1, "step": state["step"], **v})
                print(f"end of stage 1: val {v}", flush=True)
                if v["full"] > state["best"]:
                    state["best"] = v["full"]
                    save_weights(model, out / "best_fidelity.pt", meta={"step": state["step"], "val": v})
                if args.gan_minutes <= 0 and args.gan_steps <= 0:
                    save_last()
                    break
                # stage 2 starts from the best fidelity weights
                best, _ = load_weights(out / "best_fidelity.pt", device)
                model.load_state_dict(best.state_dict())
                opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.99))
                state.update(stage=2, step=0, elapsed=0.0)
                stage_start = time.time()
                save_last()
                continue
            save_weights(model, out / "detail.pt", meta={"step": state["step"], "stage": 2})
            save_last()
            break

        lr, hr, fprev, fnext = next_batch()
        b, t = hr.shape[:2]
        if state["stage"] == 1:
            for g in opt.param_groups:
                g["lr"] = args.lr * lr_factor(progress)
            per_frame = rng.random() < args.p_frame
            sr = model(lr, fprev, fnext, propagate=not per_frame, attend=not per_frame)
            loss = charbonnier(sr, hr)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        else:
            sr = model(lr, fprev, fnext)
            fake = sr.reshape(b * t, *sr.shape[2:])
            real = hr.reshape(b * t, *hr.shape[2:])
            # discriminator step (R1 every 4 steps, scaled by 4: lazy regularisation)
            real_logits, _ = disc(real)
            fake_logits, _ = disc(fake.detach())
            d_loss = d_loss_nonsaturating(real_logits, fake_logits)
            if state["step"] % 4 == 0:
                d_loss = d_loss + 4 * 1.0 * r1_penalty(disc, real)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            # generator step
            fake_logits, fake_feats = disc(fake)
            with torch.no_grad():
                _, real_feats = disc(real)
            loss = (charbonnier(sr, hr) + 0.005 * g_loss_nonsaturating(fake_logits)
                    + 0.1 * feature_matching(fake_feats, real_feats))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        state["step"] += 1
        state["elapsed"] = time.time() - stage_start
        losses.append(float(loss.detach()))
        if state["step"] % 20 == 0:
            sps = state["elapsed"] / state["step"]
            print(f"stage {state['stage']} step {state['step']} loss {np.mean(losses):.4f} "
                  f"lr {opt.param_groups[0]['lr']:.2e} {sps:.2f}s/step progress {100 * progress:.1f}% "
                  f"elapsed {state['elapsed'] / 60:.1f}min", flush=True)
            losses.clear()
        now = time.time()
        if state["stage"] == 1 and now - last_val > args.val_minutes * 60:
            v = validate(model, val, device)
            state["history"].append({"stage": 1, "step": state["step"], **v})
            print(f"val step {state['step']}: full {v['full']:.3f} dB, per-frame {v['per_frame']:.3f} dB, "
                  f"bicubic {v['bicubic']:.3f} dB", flush=True)
            if v["full"] > state["best"]:
                state["best"] = v["full"]
                save_weights(model, out / "best_fidelity.pt", meta={"step": state["step"], "val": v})
            last_val = time.time()
        if now - last_ckpt > args.ckpt_minutes * 60:
            save_last()
            last_ckpt = time.time()
    print(f"done: best validation {state['best']:.3f} dB; weights in {out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
