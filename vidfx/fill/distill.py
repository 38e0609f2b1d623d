"""The fill generator as a :class:`vidfx.diffusion.task.DistillTask`, so the DMD, DMD2 and
Diffusion2GAN trainers of :mod:`vidfx.diffusion` can distil it.

The diffusion variable is the scaled residual image ``(truth - coarse) * residual_scale``
on the training crop, (3, S, S). The lazy decoder works on hole tokens only; this wrapper
gathers them from the image, runs the decoder and scatters its prediction back (tokens
outside the hole predict 0: the coarse fill is kept there). A condition is a dict of batch-
first tensors: ``coarse`` (B, 3, S, S), ``hole`` (B, 1, S, S) and ``truth`` (B, 3, S, S; only
the GAN's real side reads it).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import nn

from vidfx.diffusion.d2g import D2GConfig, D2GTrainer
from vidfx.diffusion.dmd import DMD2Config, DMD2Trainer, DMDConfig, DMDTrainer
from vidfx.diffusion.task import PairSet
from vidfx.ops.weights import add_run_options, build_model, load_checkpoint, save_checkpoint, save_weights, start_run

from .data import DATA, CropConfig, FillBatches, training_pictures, validation_pictures
from .maskgen import ObjectShapes
from .model import LazyFill, gather_tokens, patchify, scatter_tokens
from .pipeline import FAMILY, TEACHER_WEIGHTS, build_lazyfill
from .train import validate_quality, validation_set

# The teacher's sampler steps with the lowest Fréchet distance on CamVid val (fixed holes;
# 1/2/4/8/16/32/50 steps: FD 1.77/1.10/1.28/2.05/2.65/3.10/3.41, masked PSNR 19.79/19.52/
# 18.99/18.32/17.74/17.33/17.15 dB): what the pairs are made with, and the realism a student
# has to reach. More steps lose realism with this small, briefly trained teacher.
TEACHER_STEPS = 2
PSNR_SLACK = 0.3  # a student may lose this much masked PSNR against the teacher (the target)


class FillDenoiser(nn.Module):
    """``forward(x_t, t, cond, features=False)``: x0 prediction of the residual image, with
    the decoder's final token states pooled over the hole as features (for GAN heads).

    Shape: x_t :math:`(B, 3, S, S)`, t :math:`(B,)` -> :math:`(B, 3, S, S)` (and :math:`(B, D)`).
    """

    def __init__(self, model: LazyFill):
        super().__init__()
        self.model = model
        self._states: torch.Tensor | None = None
        model.decoder.final_norm.register_forward_hook(self._keep_states)

    def _keep_states(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self._states = output

    def forward(
        self, x_t: torch.Tensor, t: torch.Tensor, cond: dict, features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        p = self.model.cfg.patch
        prep = self.model.prepare(cond["coarse"], cond["hole"])
        sel = prep["sel"]
        pred = self.model.denoise(gather_tokens(patchify(x_t, p), sel), t, prep)  # type: ignore[arg-type]
        x0 = scatter_tokens(pred, sel, p, 3)  # type: ignore[arg-type]
        if not features:
            return x0
        assert self._states is not None
        valid = sel.valid.unsqueeze(-1).float()  # type: ignore[union-attr]
        pooled = (self._states * valid).sum(1) / valid.sum(1).clamp_min(1)
        return x0, pooled


class FillDistillTask:
    """The shipped (or given) fill model as a frozen teacher, with training crops as data.

    ``pictures``: training pictures (uint8 RGB, e.g. ``data.training_pictures()``);
    ``shapes``: object silhouettes for the holes (CamVid *train* labels).
    """

    def __init__(
        self, teacher: LazyFill, pictures: list[np.ndarray], shapes: ObjectShapes, crop: int = 96, seed: int = 0
    ):
        self.teacher_net = FillDenoiser(copy.deepcopy(teacher).eval().requires_grad_(False))
        self.base = teacher
        self.shape: tuple[int, ...] = (3, crop, crop)
        self.scale = teacher.cfg.residual_scale
        self._data = FillBatches(pictures, shapes, 1, CropConfig(size=crop), seed)
        self._stream = iter(self._data)

    def teacher(self, x_t: torch.Tensor, t: torch.Tensor, cond: dict) -> torch.Tensor:
        """The frozen teacher's x0 prediction. Shape: :math:`(B, 3, S, S)` -> same."""
        with torch.no_grad():
            out = self.teacher_net(x_t, t, cond)
        assert isinstance(out, torch.Tensor)
        return out

    def make_fake_score(self) -> nn.Module:
        """A trainable copy of the teacher (DMD's fake score)."""
        return FillDenoiser(copy.deepcopy(self.base).train().requires_grad_(True))

    def make_generator(self) -> nn.Module:
        """A trainable copy of the teacher (the student's network)."""
        return FillDenoiser(copy.deepcopy(self.base).train().requires_grad_(True))

    def sample_cond(self, batch: int) -> dict:
        """``batch`` training crops with holes: coarse fill, hole and truth."""
        items = [next(self._stream) for _ in range(batch)]
        truth, hole, coarse = (torch.cat(x) for x in zip(*items, strict=True))
        return {"coarse": coarse, "hole": hole, "truth": truth}

    def sample_real(self, batch: int, cond: dict) -> torch.Tensor:
        """The real residual of each condition's crop. Shape: :math:`(B, 3, S, S)`."""
        return (cond["truth"] - cond["coarse"]) * cond["hole"] * self.scale

    def features(self, x0: torch.Tensor, cond: dict) -> torch.Tensor:
        """The teacher's context encoder on the filled crop (the diffusion model's own features:
        the E-LatentLPIPS idea). Shape: :math:`(B, 3, S, S)` -> :math:`(B, D \\cdot S/p \\cdot S/p)`."""
        filled = cond["coarse"] + x0 / self.scale * cond["hole"]
        local, _ = self.teacher_net.model.encoder(filled, cond["hole"])
        return local.flatten(1)

    def random_augment(self, batch: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """A random horizontal flip and a shift of up to a token, per sample."""
        flip = torch.rand(batch) < 0.5
        shift = torch.randint(-8, 9, (batch, 2))

        def apply(x: torch.Tensor) -> torch.Tensor:
            out = torch.where(flip.view(-1, 1, 1, 1).to(x.device), x.flip(-1), x)
            return torch.stack([o.roll((int(dy), int(dx)), (-2, -1)) for o, (dy, dx) in zip(out, shift, strict=True)])

        return apply


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="vidfx train distill", description=MAIN_DOC.split("\n")[0])
    p.add_argument("--method", choices=("dmd", "dmd2", "d2g"), default="dmd2")
    p.add_argument("--teacher", default=str(TEACHER_WEIGHTS), help="the fill weights to distil")
    p.add_argument(
        "--teacher-steps",
        type=int,
        default=TEACHER_STEPS,
        help="DDIM steps of the teacher pairs (dmd, d2g); its validation PSNR less 0.3 dB is the floor",
    )
    p.add_argument("--steps-student", type=int, default=1, help="dmd2: steps of the student (backward simulation)")
    p.add_argument("--val-holes", type=int, default=8, help="validation holes per CamVid val picture")
    p.add_argument("--pairs", type=int, default=512, help="teacher noise->x0 pairs (dmd, d2g); cached in OUT")
    p.add_argument(
        "--regression-weight", type=float, default=0.25, help="dmd: weight of the pair regression (the paper's 0.25)"
    )
    p.add_argument("--fake-updates", type=int, default=5, help="dmd2: fake-score updates per generator update")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=96)
    p.add_argument("--lr", type=float, default=1e-5)
    add_run_options(p, out="runs/distill", data=str(DATA), iters=2000, val_every=5.0)
    return p.parse_args(argv)


MAIN_DOC = """Distil the fill generator into a one-step student: ``vidfx train distill [options]``.

``--method`` dmd (distribution matching + regression on the teacher's DDIM pairs), dmd2
(two-time-scale updates, GAN head on the fake score against real crops, no regression;
``--steps-student N`` for an N-step student trained with backward simulation) or d2g
(Diffusion2GAN: ensemble feature distance on the pairs + a diffusion discriminator); the
trainers are :mod:`vidfx.diffusion.dmd` and :mod:`vidfx.diffusion.d2g`. Training crops as for
``vidfx train fill``. Model selection is on CamVid val only (fixed holes, ``--val-holes`` per
picture), every ``--val-every`` minutes: the student with the lowest Fréchet distance
(:mod:`vidfx.ops.features`) among those whose masked PSNR is within 0.3 dB of the teacher at
``--teacher-steps``; while none is, the one with the highest PSNR. It is written to OUT/best.pt,
a fill weights file (``weights:`` of the fill node; its ``steps`` and ``sampler`` are in the
metadata). OUT/last.pt resumes (``--resume``); the pair set is cached in OUT/pairs.pt and
resumes too.
"""


def better(new: dict, old: dict, floor: float) -> bool:
    """The selection rule: ``new``/``old`` are ``{"psnr", "fd"}`` validation scores (old may be
    empty); a score at or above the PSNR ``floor`` beats one below it; above it the lower FD
    wins, below it the higher PSNR."""
    if not old:
        return True
    new_ok, old_ok = new["psnr"] >= floor, old["psnr"] >= floor
    if new_ok != old_ok:
        return new_ok
    return new["fd"] < old["fd"] if new_ok else new["psnr"] > old["psnr"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``vidfx train distill``; returns an exit code."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.steps_student > 1 and args.method != "dmd2":
        raise SystemExit("vidfx train distill: --steps-student > 1 needs --method dmd2 (backward simulation)")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    say = start_run(out, args)
    data = Path(args.data)
    teacher_module, meta = build_model(args.teacher, FAMILY, build_lazyfill, "cpu")
    teacher = cast(LazyFill, teacher_module)
    task = FillDistillTask(
        teacher, training_pictures(data), ObjectShapes.from_camvid(data / "camvid" / "trainannot"), args.crop, args.seed
    )
    val = validation_set(
        validation_pictures(data), ObjectShapes.from_camvid(data / "camvid" / "valannot"), args.crop, args.val_holes
    )
    device = torch.device(args.device)
    trainer: DMDTrainer | DMD2Trainer | D2GTrainer
    if args.method == "dmd2":
        config = DMD2Config(
            batch=args.batch,
            lr_generator=args.lr,
            lr_fake=args.lr,
            fake_updates=args.fake_updates,
            student_steps=args.steps_student,
            device=args.device,
        )
        trainer = DMD2Trainer(task, config)
    else:
        pairs = PairSet.build(
            task, args.pairs, args.teacher_steps, out / "pairs.pt", chunk=32, seed=args.seed, device=device
        )
        if args.method == "dmd":
            trainer = DMDTrainer(
                task,
                pairs,
                DMDConfig(
                    batch=args.batch,
                    lr_generator=args.lr,
                    lr_fake=args.lr,
                    regression_weight=args.regression_weight,
                    device=args.device,
                ),
            )
        else:
            trainer = D2GTrainer(
                task,
                pairs,
                D2GConfig(batch=args.batch, lr_generator=args.lr, lr_discriminator=args.lr, device=args.device),
            )
    student = cast(FillDenoiser, trainer.student.net).model
    steps, renoise = args.steps_student, args.steps_student > 1
    step, elapsed, best = 0, 0.0, {}
    if args.resume and (out / "last.pt").is_file():
        ck = load_checkpoint(out / "last.pt", device)
        trainer.load_state_dict(ck["trainer"])
        step, elapsed, best = ck["step"], ck["elapsed"], ck["best"]
        say(f"resumed at step {step}, {elapsed / 60:.1f} min trained, best {best}")
    reference = validate_quality(teacher, val, args.teacher_steps, device)
    floor = reference["psnr"] - PSNR_SLACK
    say(
        f"{args.method}: {len(val)} CamVid val holes; teacher at {args.teacher_steps} steps: masked PSNR "
        f"{reference['psnr']:.2f} dB, FD {reference['fd']:.3f}; PSNR floor {floor:.2f} dB"
    )

    def done() -> bool:
        return elapsed >= args.minutes * 60 if args.minutes > 0 else step >= args.iters

    def checkpoint() -> None:
        nonlocal best
        score = validate_quality(student, val, steps, device, renoise)
        student.train()
        say(f"step {step} val ({steps} step) masked PSNR {score['psnr']:.2f} dB, FD {score['fd']:.3f}")
        if better(score, best, floor):
            best = {"psnr": round(score["psnr"], 3), "fd": round(score["fd"], 4), "step": step}
            info = {
                "steps": steps,
                "sampler": "renoise" if renoise else "ddim",
                "method": args.method,
                "val_psnr_masked": best["psnr"],
                "val_fd": best["fd"],
                "step": step,
                "teacher": meta,
                "teacher_steps": args.teacher_steps,
            }
            save_weights(out / "best.pt", FAMILY, student, student.cfg.to_dict(), info)
            say(f"new best {best}")
        save_checkpoint(
            out / "last.pt", {"trainer": trainer.state_dict(), "step": step, "elapsed": elapsed, "best": best}
        )

    if not best:
        checkpoint()  # the starting point (the teacher itself at the student's steps) is a candidate
    last_val = elapsed
    while not done():
        t0 = time.time()
        losses = trainer.step()
        step += 1
        elapsed += time.time() - t0
        if step % 20 == 0:
            say(f"step {step} " + " ".join(f"{k} {v:.4f}" for k, v in losses.items()))
        if elapsed - last_val >= args.val_every * 60:
            checkpoint()
            last_val = elapsed
    checkpoint()
    say(f"done: {step} steps, {elapsed / 60:.1f} min, best {best}")
    return 0
