"""``vidfx train vsr``: train the VSR network in two stages (fidelity, then GAN).

Stage 1 (fidelity): Charbonnier loss. With probability ``--p-frame`` a step runs the
network without propagation and attention (the per-frame ablation shares the weights,
so both modes are trained). Stage 2 (GAN): Charbonnier + non-saturating GAN loss with R1
penalty + discriminator feature matching (our LPIPS substitute), starting from the best
fidelity weights.

Progress goes to stdout; OUT/args.json records the arguments, vidfx version and date.
``last.pt`` (full state) is written atomically every few minutes and at the end, so
``--resume`` continues where a run stopped. ``best_fidelity.pt`` (selected on
the held-out split of train_hr/clips/talking, never on Vid4) and ``detail.pt`` (end of
stage 2) are weights files loadable by the node.

Example (the shipped tiny x4): ``vidfx train vsr --out runs/vsr_tiny_x4 --config tiny
--scale 4 --degradation bi --fidelity-minutes 70 --gan-minutes 0``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..ops import weights as ops_weights
from ..ops.flow import DISFlow
from ..ops.gan import gan_d_loss, gan_g_loss
from ..ops.loader import batch_stream
from ..ops.resample import imresize
from .arch import VideoSR, grow
from .config import VSRConfig, make_config
from .data import DEFAULT_DATA, ClipSampler, make_batch, validation_set
from .losses import (
    PatchDiscriminator,
    charbonnier,
    feature_matching,
    r1_penalty,
)
from .metrics import psnr_y, quantize
from .node import FAMILY, build_vsr


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="vidfx train vsr", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="run folder (checkpoints, weights, log)")
    p.add_argument("--config", default="tiny", choices=["tiny", "base", "paper"])
    p.add_argument("--scale", type=int, default=4, choices=[2, 4])
    p.add_argument("--degradation", default="bi", help="bi, bd, realistic, or a mix like 'bi:0.6,bd:0.2,realistic:0.2'")
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
    p.add_argument(
        "--init", default=None, help="start from this weights file (its config replaces --config/--scale); fine-tuning"
    )
    p.add_argument(
        "--grow",
        default="",
        help="with --init: grow to these residual block counts (totals, not increments), "
        "e.g. prop_blocks=2,lr_dec_blocks=3 (new blocks start as the identity)",
    )
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

    def __init__(
        self,
        sampler: ClipSampler,
        frames: int,
        size: int,
        batch: int,
        scale: int,
        modes: list[str],
        weights: list[float],
        seed: int,
    ):
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


def save_vsr(model: VideoSR, path: Path, meta: dict) -> None:
    """Write a vsr weights file (loadable by the node) atomically."""
    ops_weights.save_weights(path, FAMILY, model, model.cfg.to_dict(), meta)


@dataclass
class Run:
    """A training run's model, optimisers and progress (``state`` is what ``last.pt`` resumes)."""

    args: argparse.Namespace
    device: torch.device
    out: Path
    model: VideoSR
    opt: torch.optim.Optimizer
    disc: PatchDiscriminator
    opt_d: torch.optim.Optimizer
    rng: np.random.Generator
    state: dict = field(default_factory=lambda: {"stage": 1, "step": 0, "elapsed": 0.0, "best": -1.0, "history": []})

    @property
    def cfg(self) -> VSRConfig:
        """The generator's configuration."""
        return self.model.cfg


def generator_adam(model: VideoSR, lr: float) -> torch.optim.Adam:
    """A fresh Adam for the generator (a new model, a new stage)."""
    return torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.99))


def check_args(args: argparse.Namespace) -> str | None:
    """Why the arguments cannot start a run (None when they can)."""
    root = Path(args.data)
    if not (root / "train_hr").is_dir():
        return f"no train_hr/ in {root}"
    if args.grow and not args.init:
        return "--grow needs --init (the weights to grow)"
    return None


def build_run(args: argparse.Namespace) -> Run:
    """Model (fresh, or ``--init`` weights grown by ``--grow``), discriminator and optimisers."""
    device = torch.device(args.device)
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    model = VideoSR(make_config(args.config, args.scale)).to(device)
    disc = PatchDiscriminator().to(device)
    opt_d = torch.optim.Adam(disc.parameters(), lr=2e-4, betas=(0.0, 0.99))
    run = Run(args, device, Path(args.out), model, generator_adam(model, args.lr), disc, opt_d, rng)
    if args.init:
        run.model, _ = ops_weights.build_model(args.init, FAMILY, build_vsr, device)
        if args.grow:
            run.model = grow(run.model, **parse_grow(args.grow))
        run.opt = generator_adam(run.model, args.lr)
        print(f"initialised from {args.init}" + (f", grown: {args.grow}" if args.grow else ""), flush=True)
    return run


def resume(run: Run) -> None:
    """Continue from OUT/last.pt: model, optimisers, stage and step."""
    ck = ops_weights.load_checkpoint(run.out / "last.pt", run.device)
    run.model = VideoSR(VSRConfig.from_dict(ck["config"])).to(run.device)
    run.model.load_state_dict(ck["model"])
    run.opt = generator_adam(run.model, run.args.lr)
    run.opt.load_state_dict(ck["opt"])
    run.disc.load_state_dict(ck["disc"])
    run.opt_d.load_state_dict(ck["opt_d"])
    run.state = ck["state"]
    run.rng = np.random.default_rng(run.args.seed + 1000 * run.state["step"] + run.state["stage"])
    print(f"resumed from {run.out / 'last.pt'}: stage {run.state['stage']} step {run.state['step']}", flush=True)


def save_last(run: Run) -> None:
    """Write OUT/last.pt (everything ``resume`` needs) atomically."""
    ops_weights.save_checkpoint(
        run.out / "last.pt",
        {
            "config": run.cfg.to_dict(),
            "model": run.model.state_dict(),
            "opt": run.opt.state_dict(),
            "disc": run.disc.state_dict(),
            "opt_d": run.opt_d.state_dict(),
            "state": run.state,
        },
    )


def build_data(run: Run) -> tuple[list, Callable[[], tuple]]:
    """(validation clips, ``next_batch()`` -> (lr, hr, flow_prev, flow_next) on the device)."""
    args, cfg = run.args, run.cfg
    root = Path(args.data)
    cache = Path(args.cache) if args.cache else run.out / "cache"
    t0 = time.time()
    sampler = ClipSampler(root, "train", p_video=args.p_video, cache_dir=cache)
    val = validation_set(root, cfg.scale, cache_dir=cache)
    print(
        f"data: {len(sampler.stills)} stills, {len(sampler.videos)} videos; {len(val)} validation clips "
        f"({time.time() - t0:.0f}s)",
        flush=True,
    )
    modes, weights = parse_mix(args.degradation)
    state = run.state
    stream = BatchStream(
        sampler,
        args.frames,
        args.lr_crop * cfg.scale,
        args.batch,
        cfg.scale,
        modes,
        weights,
        args.seed + 7919 * state["step"] + state["stage"],
    )
    loader = batch_stream(stream, args.workers, prefetch=2)

    def next_batch():
        b = next(loader)
        return tuple(b[k].to(run.device) for k in ("lr", "hr", "flow_prev", "flow_next"))

    return val, next_batch


def stage_progress(args: argparse.Namespace, state: dict, elapsed: float) -> float:
    """How far the current stage is (1.0 = done), by steps or by its time budget."""
    if state["stage"] == 1:
        budget = args.fidelity_minutes * 60
        progress = state["step"] / max(args.fidelity_steps, 1)
        return max(progress, elapsed / budget) if budget > 0 else progress
    budget = args.gan_minutes * 60
    progress = state["step"] / max(args.gan_steps, 1) if args.gan_steps else 1.0
    if budget > 0:
        progress = max(progress, elapsed / budget) if args.gan_steps else elapsed / budget
    return progress


def fidelity_step(run: Run, batch: tuple, progress: float) -> torch.Tensor:
    """One stage-1 step: Charbonnier loss, sometimes in per-frame mode (``--p-frame``)."""
    lr, hr, fprev, fnext = batch
    for g in run.opt.param_groups:
        g["lr"] = run.args.lr * lr_factor(progress)
    per_frame = run.rng.random() < run.args.p_frame
    sr = run.model(lr, fprev, fnext, propagate=not per_frame, attend=not per_frame)
    loss = charbonnier(sr, hr)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(run.model.parameters(), 1.0)
    run.opt.step()
    return loss


def gan_step(run: Run, batch: tuple) -> torch.Tensor:
    """One stage-2 step: a discriminator update (R1 every 4 steps, scaled by 4: lazy
    regularisation), then a generator update (Charbonnier + GAN + feature matching)."""
    lr, hr, fprev, fnext = batch
    b, t = hr.shape[:2]
    disc = run.disc
    sr = run.model(lr, fprev, fnext)
    fake = sr.reshape(b * t, *sr.shape[2:])
    real = hr.reshape(b * t, *hr.shape[2:])
    real_logits, _ = disc(real)
    fake_logits, _ = disc(fake.detach())
    d_loss = gan_d_loss(real_logits, fake_logits)
    if run.state["step"] % 4 == 0:
        d_loss = d_loss + 4 * 1.0 * r1_penalty(disc, real)
    run.opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    run.opt_d.step()
    fake_logits, fake_feats = disc(fake)
    with torch.no_grad():
        _, real_feats = disc(real)
    loss = charbonnier(sr, hr) + 0.005 * gan_g_loss(fake_logits) + 0.1 * feature_matching(fake_feats, real_feats)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(run.model.parameters(), 1.0)
    run.opt.step()
    return loss


def validate_and_keep_best(run: Run, val: list) -> dict:
    """Validate, log it in the run's history, and write OUT/best_fidelity.pt on a new best."""
    state = run.state
    v = validate(run.model, val, run.device)
    state["history"].append({"stage": 1, "step": state["step"], **v})
    if v["full"] > state["best"]:
        state["best"] = v["full"]
        save_vsr(run.model, run.out / "best_fidelity.pt", meta={"step": state["step"], "val": v})
    return v


def end_stage(run: Run, val: list) -> bool:
    """Finish the current stage; True when training is over. Stage 2 starts from the best
    fidelity weights; its end writes OUT/detail.pt."""
    args, state = run.args, run.state
    if state["stage"] == 1:
        v = validate_and_keep_best(run, val)
        print(f"end of stage 1: val {v}", flush=True)
        if args.gan_minutes <= 0 and args.gan_steps <= 0:
            save_last(run)
            return True
        best, _ = ops_weights.build_model(run.out / "best_fidelity.pt", FAMILY, build_vsr, run.device)
        run.model.load_state_dict(best.state_dict())
        run.opt = generator_adam(run.model, 1e-4)
        state.update(stage=2, step=0, elapsed=0.0)
        save_last(run)
        return False
    save_vsr(run.model, run.out / "detail.pt", meta={"step": state["step"], "stage": 2})
    save_last(run)
    return True


def train(run: Run, val: list, next_batch: Callable[[], tuple]) -> None:
    """The training loop: steps of the current stage until both stages are done, with
    periodic validation (stage 1) and checkpoints."""
    args, state = run.args, run.state
    run.model.train()
    stage_start = time.time() - state["elapsed"]
    last_ckpt = last_val = time.time()
    losses: list[float] = []
    while True:
        progress = stage_progress(args, state, time.time() - stage_start)
        if progress >= 1.0:
            if end_stage(run, val):
                return
            stage_start = time.time()
            continue
        batch = next_batch()
        loss = fidelity_step(run, batch, progress) if state["stage"] == 1 else gan_step(run, batch)
        state["step"] += 1
        state["elapsed"] = time.time() - stage_start
        losses.append(float(loss.detach()))
        if state["step"] % 20 == 0:
            sps = state["elapsed"] / state["step"]
            print(
                f"stage {state['stage']} step {state['step']} loss {np.mean(losses):.4f} "
                f"lr {run.opt.param_groups[0]['lr']:.2e} {sps:.2f}s/step progress {100 * progress:.1f}% "
                f"elapsed {state['elapsed'] / 60:.1f}min",
                flush=True,
            )
            losses.clear()
        now = time.time()
        if state["stage"] == 1 and now - last_val > args.val_minutes * 60:
            v = validate_and_keep_best(run, val)
            print(
                f"val step {state['step']}: full {v['full']:.3f} dB, per-frame {v['per_frame']:.3f} dB, "
                f"bicubic {v['bicubic']:.3f} dB",
                flush=True,
            )
            last_val = time.time()
        if now - last_ckpt > args.ckpt_minutes * 60:
            save_last(run)
            last_ckpt = time.time()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``vidfx train vsr``; returns an exit code."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    problem = check_args(args)
    if problem:
        print(f"vidfx train vsr: {problem}", file=sys.stderr)
        return 2
    parse_mix(args.degradation)  # fail on a bad mix before any work
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ops_weights.write_run_args(out, args)
    run = build_run(args)
    if run.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if args.resume and (out / "last.pt").exists():
        resume(run)
    n_params = sum(p.numel() for p in run.model.parameters())
    print(
        f"model {args.config} x{run.cfg.scale}: {n_params} parameters; degradation {args.degradation}; "
        f"device {run.device}",
        flush=True,
    )
    val, next_batch = build_data(run)
    train(run, val, next_batch)
    print(f"done: best validation {run.state['best']:.3f} dB; weights in {out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
