"""Train the translate generator: ``vidfx train translate [options]``.

``--task day2dusk`` (unpaired, CycleGAN-Turbo): one :class:`~vidfx.translate.model.TranslateNet`
translates both ways (its direction embedding picks day->dusk or dusk->day). Per step, on
random crops of CamVid train day frames (sequences 0006R0, 0016E5) and dusk frames (0001TP),
with the ``select`` frames held out (:func:`vidfx.translate.data.domain_files`):

- adversarial: a PatchGAN discriminator per domain (non-saturating loss), ``--gan`` weight;
- cycle consistency: L1 of day -> dusk -> day and dusk -> day -> dusk, weight 1;
- identity: L1 of a dusk frame sent "to dusk" (and day "to day"), ``--identity`` weight;
- temporal: the day crop moved by a random small similarity transform (shift, rotation, zoom)
  must translate to the translation of the crop moved the same way (L1 where the warp is
  inside the crop), ``--temporal`` weight: a static scene must not shimmer, and a moving one
  must translate the same way as it moves.

``--task edges`` (paired, pix2pix-Turbo): edge maps (:func:`vidfx.translate.edges.edge_map`)
to frames, on the training pictures of the fill model (photos, CamVid train, training clips):
L1 reconstruction + a conditional PatchGAN (edges concatenated to the image).

``--scratch`` trains the same architecture from random initialisation (the ablation); by
default the backbone is the fill node's distilled one-step generator, frozen, with LoRA.
Selection (``day2dusk``): every ``--val-every`` minutes on the held-out ``select`` frames
(CamVid train; never val or test): the Fréchet distance of translated day frames to the
select dusk frames, among checkpoints whose segment mIoU on the translated frames is within
5 points of the untranslated frames' (the first checkpoint otherwise). ``edges``: L1 on the
held-out select pictures. OUT/ gets ``args.json``, ``log.txt``, ``last.pt`` (``--resume``) and
``best.pt`` (a vidfx weights file).
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from pathlib import Path
from typing import cast

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vidfx.diffusion.task import optimiser_step
from vidfx.fill.data import DATA, read_rgb, training_pictures
from vidfx.fill.model import LazyFill
from vidfx.fill.pipeline import STUDENT_WEIGHTS, build_lazyfill
from vidfx.ops.gan import PatchDiscriminator, gan_d_loss, gan_g_loss
from vidfx.ops.warp import backward_warp
from vidfx.ops.weights import (
    add_run_options,
    build_model,
    load_checkpoint,
    save_checkpoint,
    save_weights,
    start_run,
)

from .data import domain_files
from .edges import edge_map
from .model import DIRECTIONS, FAMILY, WORK_SIZE, TranslateConfig, TranslateNet
from .selection import select_score

GRAD_CLIP = 1.0  # generator gradient norm limit
MIOU_SLACK = 5.0  # points of segment mIoU a translation may lose (the structure target)
# Selection keeps this much of the slack in reserve: the select frames are few (51), and the
# target has to hold on frames selection never sees (a model at -4.8 on them lost 6.2 on val).
SELECT_MARGIN = 1.0


def working_size(picture: np.ndarray, size: int = WORK_SIZE) -> np.ndarray:
    """A uint8 RGB picture scaled (area) so its long side is ``size``, as float32 0..1."""
    h, w = picture.shape[:2]
    s = size / max(h, w)
    return cv2.resize(picture, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA).astype(np.float32) / 255


def load_pictures(files: list[Path], size: int = WORK_SIZE) -> list[np.ndarray]:
    """Pictures scaled so their long side is ``size`` (area), float32 RGB 0..1."""
    return [working_size(read_rgb(f), size) for f in files]


def random_crops(pictures: list[np.ndarray], batch: int, crop: int, rng: np.random.Generator) -> torch.Tensor:
    """``batch`` random ``crop`` x ``crop`` crops (random picture, place, horizontal flip).

    Shape: output :math:`(B, 3, crop, crop)`.
    """
    out = []
    for _ in range(batch):
        img = pictures[int(rng.integers(len(pictures)))]
        h, w = img.shape[:2]
        y, x = int(rng.integers(h - crop + 1)), int(rng.integers(w - crop + 1))
        c = img[y : y + crop, x : x + crop]
        out.append(c[:, ::-1] if rng.random() < 0.5 else c)
    return torch.from_numpy(np.ascontiguousarray(np.stack(out))).permute(0, 3, 1, 2)


def random_motion(batch: int, size: int, rng: np.random.Generator, shift: float = 6.0) -> torch.Tensor:
    """A random small similarity transform per sample as a backward flow: shift up to ``shift``
    px, rotation up to 2 degrees, zoom up to 3 %.

    Shape: output :math:`(B, 2, size, size)`.
    """
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) - (size - 1) / 2
    flows = []
    for _ in range(batch):
        a = math.radians(rng.uniform(-2, 2))
        z = 1 + rng.uniform(-0.03, 0.03)
        tx, ty = rng.uniform(-shift, shift, 2)
        sx = z * (math.cos(a) * xs - math.sin(a) * ys) + tx
        sy = z * (math.sin(a) * xs + math.cos(a) * ys) + ty
        flows.append(np.stack([sx - xs, sy - ys]))
    return torch.from_numpy(np.stack(flows).astype(np.float32))


def inside(flow: torch.Tensor) -> torch.Tensor:
    """Where ``p + flow(p)`` lands inside the image (a margin of 1 px).

    Shape: :math:`(B, 2, H, W)` -> :math:`(B, 1, H, W)` float.
    """
    _, _, h, w = flow.shape
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    sx, sy = xs + flow[:, 0], ys + flow[:, 1]
    ok = (sx >= 1) & (sx <= w - 2) & (sy >= 1) & (sy <= h - 2)
    return ok[:, None].float()


def warp_consistency(moved_out: torch.Tensor, out: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """The temporal loss: mean L1 between the translation of a moved input ``moved_out`` and the
    translation of the unmoved input ``out`` moved along ``flow``, where the motion stays inside.

    Shape: moved_out, out :math:`(B, 3, H, W)`, flow :math:`(B, 2, H, W)` -> scalar.
    """
    valid = inside(flow).to(out.device)
    return ((moved_out - backward_warp(out, flow)).abs() * valid).sum() / (3 * valid.sum()).clamp_min(1)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="vidfx train translate", description=__doc__.split("\n")[0])
    p.add_argument("--task", choices=("day2dusk", "edges"), default="day2dusk")
    p.add_argument("--scratch", action="store_true", help="random initialisation, all trained (the ablation)")
    p.add_argument("--backbone", default=str(STUDENT_WEIGHTS), help="the one-step diffusion generator adapted")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--gan", type=float, default=0.1, help="adversarial loss weight")
    p.add_argument("--identity", type=float, default=1.0, help="identity loss weight (day2dusk)")
    p.add_argument("--temporal", type=float, default=1.0, help="temporal consistency loss weight")
    p.add_argument("--lora-rank", type=int, default=8)
    p.add_argument(
        "--output",
        choices=("affine", "residual"),
        default="affine",
        help="day2dusk: local colour transforms (default) or a pixel residual; edges always residual",
    )
    p.add_argument("--ema", type=float, default=0.99, help="decay of the generator's moving average (what is selected)")
    add_run_options(p, out="runs/translate", data=str(DATA), iters=2000, val_every=2.5)
    return p.parse_args(argv)


def build_net(args: argparse.Namespace) -> TranslateNet:
    """The generator a run trains: the pretrained student with adapters, or the scratch ablation
    (the same architecture and sizes, random weights, everything trained)."""
    backbone = cast(LazyFill, build_model(args.backbone, "fill", build_lazyfill, "cpu")[0])
    in_channels = 1 if args.task == "edges" else 3
    output = "residual" if args.task == "edges" else args.output
    if args.scratch:
        cfg = TranslateConfig(backbone=backbone.cfg, pretrained=False, in_channels=in_channels, output=output)
        return TranslateNet(cfg)
    cfg = TranslateConfig(backbone=backbone.cfg, lora_rank=args.lora_rank, in_channels=in_channels, output=output)
    return TranslateNet(cfg, backbone)


def edge_batch(pictures: list[np.ndarray], batch: int, crop: int, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
    """(edge maps :math:`(B, 1, S, S)`, frames :math:`(B, 3, S, S)`) of random crops."""
    frames = random_crops(pictures, batch, crop, rng)
    edges = [torch.from_numpy(edge_map(f.permute(1, 2, 0).numpy())).permute(2, 0, 1) for f in frames]
    return torch.stack(edges), frames


def run_pictures(args: argparse.Namespace) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """The pictures of a run at the working size: (domain A train, domain B train, held-out
    pictures of the ``edges`` task; the day/dusk select frames are read by the selection)."""
    data = Path(args.data)
    if args.task == "day2dusk":
        day, dusk = (load_pictures(domain_files(data, d, "train")) for d in ("day", "dusk"))
        return day, dusk, []
    pictures = [p for p in map(working_size, training_pictures(data)) if min(p.shape[:2]) >= args.crop]
    return [p for i, p in enumerate(pictures) if i % 10], [], pictures[::10][:40]


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``vidfx train translate``; returns an exit code."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    say = start_run(out, args)
    device = torch.device(args.device)
    train_a, train_b, held_out = run_pictures(args)
    say(f"{args.task}: {len(train_a)} + {len(train_b)} training pictures")

    net = build_net(args).to(device)
    ema = copy.deepcopy(net).requires_grad_(False).eval()  # GAN weights wander: the average is selected
    paired = args.task == "edges"
    discs = nn.ModuleList([PatchDiscriminator(4 if paired else 3)] + ([] if paired else [PatchDiscriminator(3)]))
    discs = discs.to(device)
    params = [p for p in net.parameters() if p.requires_grad]
    opt_g = torch.optim.Adam(params, lr=args.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discs.parameters(), lr=args.lr, betas=(0.5, 0.999))
    total = sum(p.numel() for p in net.parameters())
    say(f"trainable {sum(p.numel() for p in params) / 1e6:.3f}M of {total / 1e6:.3f}M parameters")
    step, elapsed, best = 0, 0.0, {}
    if args.resume and (out / "last.pt").is_file():
        ck = load_checkpoint(out / "last.pt", device)
        net.load_state_dict(ck["net"])
        ema.load_state_dict(ck["ema"])
        discs.load_state_dict(ck["discs"])
        opt_g.load_state_dict(ck["opt_g"])
        opt_d.load_state_dict(ck["opt_d"])
        step, elapsed, best = ck["step"], ck["elapsed"], ck["best"]
        say(f"resumed at step {step}, {elapsed / 60:.1f} min trained, best {best}")

    data = Path(args.data)
    baseline = select_score(None, args.task, data, device, held_out)
    say(f"select frames, untranslated: {baseline}")

    def checkpoint() -> None:
        nonlocal best
        score = select_score(ema, args.task, data, device, held_out)
        say(f"step {step} select {score}")
        meta = {
            "task": args.task,
            "pretrained": not args.scratch,
            "work_size": WORK_SIZE,
            "select": score,
            "select_untranslated": baseline,
            "step": step,
            "train_minutes": round(elapsed / 60, 1),
        }
        save_weights(out / f"check_step{step}.pt", FAMILY, ema, ema.cfg.to_dict(), meta, half=True)
        if better(score, best, baseline, args.task):
            best = {**score, "step": step}
            save_weights(out / "best.pt", FAMILY, ema, ema.cfg.to_dict(), meta, half=True)
            say(f"new best {best}")
        state = {
            "net": net.state_dict(),
            "ema": ema.state_dict(),
            "discs": discs.state_dict(),
            "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict(),
        }
        save_checkpoint(out / "last.pt", {**state, "step": step, "elapsed": elapsed, "best": best})

    def done() -> bool:
        return elapsed >= args.minutes * 60 if args.minutes > 0 else step >= args.iters

    if not best:
        checkpoint()
    last_val = elapsed
    losses: dict[str, float] = {}
    while not done():
        t0 = time.time()
        if paired:
            losses = paired_step(net, discs[0], opt_g, opt_d, params, train_a, args, rng, device)
        else:
            losses = unpaired_step(net, discs, opt_g, opt_d, params, train_a, train_b, args, rng, device)
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), net.parameters(), strict=True):
                pe.lerp_(pm, 1 - args.ema)
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


def better(score: dict, best: dict, baseline: dict, task: str) -> bool:
    """The selection rule (module docstring): ``day2dusk`` lowest FD among scores whose mIoU is
    within :data:`MIOU_SLACK` - :data:`SELECT_MARGIN` points of ``baseline``'s; ``edges`` lowest L1."""
    if not best:
        return True
    if task == "edges":
        return bool(score["l1"] < best["l1"])
    floor = baseline["miou"] - (MIOU_SLACK - SELECT_MARGIN)
    ok, best_ok = score["miou"] >= floor, best["miou"] >= floor
    if ok != best_ok:
        return ok
    return bool(score["fd"] < best["fd"]) if ok else bool(score["miou"] > best["miou"])


def unpaired_step(
    net: TranslateNet,
    discs: nn.ModuleList,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    params: list[nn.Parameter],
    day: list[np.ndarray],
    dusk: list[np.ndarray],
    args: argparse.Namespace,
    rng: np.random.Generator,
    device: torch.device,
) -> dict[str, float]:
    """One CycleGAN-Turbo step (generator, then both discriminators)."""
    to_dusk, to_day = DIRECTIONS.index("day2dusk"), DIRECTIONS.index("dusk2day")
    b = args.batch
    a = random_crops(day, b, args.crop, rng).to(device)
    d = random_crops(dusk, b, args.crop, rng).to(device)
    dir_b = torch.full((b,), to_dusk, device=device)
    dir_a = torch.full((b,), to_day, device=device)
    disc_a, disc_b = discs[0], discs[1]

    fake_d = net(a, dir_b)
    fake_a = net(d, dir_a)
    cycle = F.l1_loss(net(fake_d, dir_a), a) + F.l1_loss(net(fake_a, dir_b), d)
    identity = F.l1_loss(net(d, dir_b), d) + F.l1_loss(net(a, dir_a), a)
    adv = gan_g_loss(disc_b(fake_d).flatten()) + gan_g_loss(disc_a(fake_a).flatten())
    flow = random_motion(b, args.crop, rng).to(device)
    temporal = warp_consistency(net(backward_warp(a, flow), dir_b), fake_d, flow)
    loss = cycle + args.identity * identity + args.gan * adv + args.temporal * temporal
    optimiser_step(opt_g, loss, params, GRAD_CLIP)

    loss_d = gan_d_loss(disc_b(d).flatten(), disc_b(fake_d.detach()).flatten())
    loss_d = loss_d + gan_d_loss(disc_a(a).flatten(), disc_a(fake_a.detach()).flatten())
    optimiser_step(opt_d, loss_d)
    return {
        "cycle": cycle.item(),
        "identity": identity.item(),
        "gan_g": adv.item(),
        "gan_d": loss_d.item(),
        "temporal": temporal.item(),
    }


def paired_step(
    net: TranslateNet,
    disc: nn.Module,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    params: list[nn.Parameter],
    pictures: list[np.ndarray],
    args: argparse.Namespace,
    rng: np.random.Generator,
    device: torch.device,
) -> dict[str, float]:
    """One pix2pix-Turbo step: L1 reconstruction + conditional GAN + temporal consistency."""
    edges, frames = (x.to(device) for x in edge_batch(pictures, args.batch, args.crop, rng))
    fake = net(edges)
    recon = F.l1_loss(fake, frames)
    adv = gan_g_loss(disc(torch.cat([fake, edges], 1)).flatten())
    flow = random_motion(args.batch, args.crop, rng).to(device)
    temporal = warp_consistency(net(backward_warp(edges, flow)), fake, flow)
    loss = recon + args.gan * adv + args.temporal * temporal
    optimiser_step(opt_g, loss, params, GRAD_CLIP)
    loss_d = gan_d_loss(
        disc(torch.cat([frames, edges], 1)).flatten(), disc(torch.cat([fake.detach(), edges], 1)).flatten()
    )
    optimiser_step(opt_d, loss_d)
    return {"recon": recon.item(), "gan_g": adv.item(), "gan_d": loss_d.item(), "temporal": temporal.item()}


if __name__ == "__main__":
    raise SystemExit(main())
