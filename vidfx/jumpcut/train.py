"""``vidfx train jumpcut``: train the synthesizer prior on talking-head videos.

The clips are the **train identities** (``identities.TRAIN_IDS``, 15 people; nobody in
``identities.VAL_IDS`` is trained on), each read as the largest square around the face
(``identities.read_face_clip``), or the ``*.mp4`` files of ``--data``.

Examples are random source/target pairs from the same video: a target frame t between two
frames a < t < b, sources [a-k1, a, b, b+k2], and target keypoints that are either frame t's own
(plain reenactment) or interpolated between a and b (exactly what happens at a cut). Frames in
the segments the evaluation removes (``evaluate.eval_gaps``) are never used, so the evaluation's
real frames stay unseen (for a split this is off: the evaluation uses other people).

Losses: a pixel loss (Charbonnier + L2 + image gradients), a feature-space reconstruction loss
in the project's own network (``ops.features.feature_loss``; no VGG/LPIPS weights exist
offline) and a non-saturating PatchGAN adversarial loss on the working-size face crop
(``ops.gan``); the last two do not reward blur as a pixel loss does.

Resumes from ``--checkpoint`` if it exists; writes the shipped weights (``--out``, a
``vidfx.ops.weights`` file) at the end and at every checkpoint, and the run's arguments
(``args.json``) next to the checkpoint. The examples, losses and optimisation steps here also
serve the synthesizer's per-transition adaptation (``synthesize.Synthesizer``).
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import pickle
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from vidfx.ops import weights as ops_weights
from vidfx.ops.features import feature_loss
from vidfx.ops.gan import PatchDiscriminator, gan_d_loss, gan_g_loss

from . import identities as ids
from .evaluate import eval_gaps
from .interpolate import interpolate_keypoints
from .keypoints import MediaPipeDetector, smooth_sequence
from .model import FAMILY, SynthConfig, SynthNet
from .synthesize import DEFAULT_WEIGHTS, CropContext, crop_box, load_net

log = logging.getLogger("vidfx.jumpcut.train")


# --- training examples, losses and steps (also used by the per-transition adaptation) ------------


def make_example(
    ctx: CropContext, sources: list[int], a: int, b: int, t: int, use_real: bool, easing: str
) -> dict[str, torch.Tensor]:
    """One training example: predict real frame ``t`` (a < t < b) from ``sources``.

    The target keypoints are frame t's own (``use_real``) or, as at a real cut, interpolated
    between frames a and b (with the end velocities from frames a-1 and b+1). The whole-frame
    candidates are the dissolve of frames a and b at t and their DIS flow interpolation.
    """
    tau = (t - a) / (b - a)
    tgt_kp = (
        ctx.kps[t]
        if use_real
        else interpolate_keypoints(ctx.kps[a], ctx.kps[b], [tau], easing, ctx.kps[a - 1], ctx.kps[b + 1], span=b - a)[0]
    )
    tgt_map = ctx.keymap(t) if use_real else ctx.render(tgt_kp)
    img_a, img_b = ctx.image(a), ctx.image(b)
    return {
        "flow_frame": ctx.flow_frame(a, b, tau),
        "kp_flow": torch.from_numpy(ctx.flow(tgt_kp, sources)),
        "src_img": torch.stack([ctx.image(i) for i in sources]),
        "src_map": torch.stack([ctx.keymap(i) for i in sources]),
        "tgt_map": tgt_map,
        "fade": (1 - tau) * img_a + tau * img_b,
        "target": ctx.image(t),
    }


def sample_indices(
    rng: random.Random, usable: list[bool], max_gap: int, max_offset: int, tries: int = 50, long_gap_prob: float = 0.0
) -> tuple[list[int], int, int, int] | None:
    """Random (sources, a, b, t) with a < t < b, sources [a-k1, a, b, b+k2], every index usable;
    the gap (frames between a and b) is ``max_gap`` with probability ``long_gap_prob``, else uniform."""
    n = len(usable)
    for _ in range(tries):
        gap = max_gap if rng.random() < long_gap_prob else rng.randint(1, max_gap)
        k1, k2 = rng.randint(1, max_offset), rng.randint(1, max_offset)
        lo, hi = k1, n - 1 - gap - 1 - k2
        if hi < lo:
            continue
        a = rng.randint(lo, hi)
        b = a + gap + 1
        t = rng.randint(a + 1, b - 1)
        idx = [a - k1, a, b, b + k2, t]
        if all(usable[i] for i in idx):
            return idx[:4], a, b, t
    return None


def collate(examples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack examples into a batch."""
    return {k: torch.stack([e[k] for e in examples]) for k in examples[0]}


def loss_fn(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Charbonnier (smooth L1) + L2 photometric loss, plus an image-gradient term for edges."""
    diff = pred - target
    charb = torch.sqrt(diff * diff + 1e-6).mean()
    l2 = (diff * diff).mean()
    gx = (pred[..., :, 1:] - pred[..., :, :-1]) - (target[..., :, 1:] - target[..., :, :-1])
    gy = (pred[..., 1:, :] - pred[..., :-1, :]) - (target[..., 1:, :] - target[..., :-1, :])
    return charb + 10 * l2 + 0.5 * (gx.abs().mean() + gy.abs().mean())


class SimpleAdam:
    """Plain Adam for the short per-video adaptation. (torch.optim's first use imports
    torch._dynamo, which alone takes many seconds on a busy CPU: too much for a 60 s budget.)"""

    def __init__(self, params, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.betas, self.eps, self.t = lr, betas, eps, 0
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        """Forget the gradients."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One Adam update."""
        self.t += 1
        b1, b2 = self.betas
        c1, c2 = 1 - b1**self.t, 1 - b2**self.t
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            m.mul_(b1).add_(p.grad, alpha=1 - b1)
            v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
            p.addcdiv_(m / c1, (v / c2).sqrt_().add_(self.eps), value=-self.lr)


def attention_loss(aux: dict, target: torch.Tensor) -> torch.Tensor:
    """Teach the cross-modal attention correspondence and source choice directly (cheap to learn
    on a CPU budget): within each source its expected position should be where the keypoint warp
    says, and across sources its weight should follow how well each warped source matches."""
    pos_loss = (aux["attn_pos"] - aux["kp_pos"]).abs().mean()
    b, nq, s = aux["source_weights"].shape
    side = int(round(nq**0.5))
    err = F.adaptive_avg_pool2d((aux["coarse_warped"] - target[:, None]).abs().mean(2), side)  # (B, S, h, w)
    # the best source at a position: the one whose keypoints there are closest to the target's
    # (least warping) and whose warp matches best
    ys, xs = torch.meshgrid(
        torch.linspace(-1 + 1 / side, 1 - 1 / side, side),
        torch.linspace(-1 + 1 / side, 1 - 1 / side, side),
        indexing="ij",
    )
    ident = torch.stack([xs, ys], -1).reshape(1, nq, 1, 2)
    disp = (aux["kp_pos"] - ident).abs().sum(-1)  # (B, Nq, S)
    score = err.flatten(2).transpose(1, 2) / 0.01 + disp / 0.02
    best = (-score).softmax(-1).detach()
    choice = -(best * torch.log(aux["source_weights"] + 1e-6)).sum(-1).mean()
    return 2.0 * pos_loss + 0.2 * choice


def train_steps(
    net: SynthNet,
    opt,
    contexts: list[tuple[CropContext, list[bool]]],
    steps: int,
    batch: int,
    rng: random.Random,
    real_prob: float,
    easing: str,
    max_gap: int = 12,
    max_offset: int = 6,
    fade_dropout: float = 0.5,
    long_gap_prob: float = 0.0,
    sharp: SharpLosses | None = None,
) -> float:
    """Run ``steps`` optimisation steps on examples drawn from ``contexts``; mean loss.
    ``sharp``: the feature and adversarial losses (training the prior; the per-video adaptation
    uses the pixel losses only)."""
    net.train()
    total = 0.0
    for _ in range(steps):
        examples = []
        while len(examples) < batch:
            ctx, usable = contexts[rng.randrange(len(contexts))]
            pick = sample_indices(rng, usable, max_gap, max_offset, long_gap_prob=long_gap_prob)
            if pick is None:
                continue
            sources, a, b, t = pick
            examples.append(make_example(ctx, sources, a, b, t, rng.random() < real_prob, easing))
        x = collate(examples)
        pred, aux = net(
            x["src_img"],
            x["src_map"],
            x["tgt_map"],
            x["fade"],
            x["kp_flow"],
            use_fade=rng.random() >= fade_dropout,
            flow_frame=x["flow_frame"],
        )
        # the attention's own correspondences must explain the target too (trains the attention directly)
        coarse = (aux["coarse_weights"][:, :, None] * (aux["coarse_warped"] - x["target"][:, None]).abs()).sum(1).mean()
        loss = loss_fn(pred, x["target"]) + 0.5 * coarse + attention_loss(aux, x["target"])
        if sharp is not None:
            loss = loss + sharp.generator_loss(pred, x["target"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sharp is not None:
            sharp.discriminator_step(pred.detach(), x["target"])
        total += loss.item()
    net.eval()
    return total / max(1, steps)


class SharpLosses:
    """The losses that do not reward blur: feature-space reconstruction in the project's own
    segmentation network (frozen) and a PatchGAN adversarial loss, with the discriminator's
    optimiser. ``feature_weight`` / ``gan_weight`` of 0 switch a term off."""

    def __init__(self, feature_weight: float, gan_weight: float, lr: float = 2e-4):
        from vidfx.segment.model import load_model_shared

        self.feature_weight, self.gan_weight = feature_weight, gan_weight
        self.features = load_model_shared(device="cpu") if feature_weight > 0 else None
        self.disc = PatchDiscriminator(3)
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=lr, betas=(0.5, 0.999))

    def generator_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Weighted feature + adversarial loss of a batch. Shape: :math:`(B, 3, R, R)` each -> scalar."""
        loss = pred.new_zeros(())
        if self.features is not None:
            loss = loss + self.feature_weight * feature_loss(self.features, pred, target)
        if self.gan_weight > 0:
            self.disc.requires_grad_(False)
            loss = loss + self.gan_weight * gan_g_loss(self.disc(pred))
            self.disc.requires_grad_(True)
        return loss

    def discriminator_step(self, fake: torch.Tensor, real: torch.Tensor) -> None:
        """One discriminator update on a batch of predictions (detached) and real targets."""
        if self.gan_weight <= 0:
            return
        loss = gan_d_loss(self.disc(real), self.disc(fake))
        self.opt_d.zero_grad()
        loss.backward()
        self.opt_d.step()

    def state_dict(self) -> dict:
        """The discriminator and its optimiser (for checkpoints)."""
        return {"disc": self.disc.state_dict(), "opt_d": self.opt_d.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Inverse of :meth:`state_dict`."""
        self.disc.load_state_dict(state["disc"])
        self.opt_d.load_state_dict(state["opt_d"])


# --- data ----------------------------------------------------------------------------------------


def load_clip(path: str, size: int, cache_dir: str | None, mode: str = "video", sigma: float = 1.0):
    """Frames (uint8, SIZE x SIZE) and MediaPipe keypoints of one clip (keypoints cached):
    ``mode`` "video" (tracking) or "static" (per frame, as the synthesizer detects them), smoothed
    over time with ``sigma`` (0 = raw, as the synthesizer uses them). Frames are the largest
    square around the face (``identities.read_face_clip``)."""
    frames, _ = ids.read_face_clip(path, size=size)
    cache = None
    if cache_dir:
        os.makedirs(cache_dir, exist_ok=True)
        st = os.stat(path)
        tag = "" if mode == "video" else f"_{mode}"
        cache = os.path.join(cache_dir, f"{os.path.basename(path)}_{st.st_size}_{size}{tag}_face.kps.pkl")
    if cache and os.path.exists(cache):
        with open(cache, "rb") as fh:
            kps = pickle.load(fh)
    else:
        det = MediaPipeDetector(video_mode=mode == "video", with_body=True)
        kps = [det.detect(f) for f in frames]
        det.close()
        if cache:
            with open(cache, "wb") as fh:
                pickle.dump(kps, fh)
    return frames, smooth_sequence(kps, sigma)


def build_contexts(
    clips: list[str],
    size: int,
    work_size: int,
    chunk: int,
    exclude: tuple[int, int, int],
    cache_dir: str | None,
    topology,
    mode: str = "video",
    sigma: float = 1.0,
):
    """Crop contexts (chunks of ``chunk`` frames, overlapping by half) with their usable-frame masks."""
    contexts = []
    for path in clips:
        frames, kps = load_clip(path, size, cache_dir, mode, sigma)
        n = len(frames)
        banned = set()
        gap, cases, context = exclude
        if cases > 0:
            for s in eval_gaps(n, gap, cases, context):
                banned.update(range(s, s + gap))
        step = max(1, chunk // 2)
        for start in range(0, max(1, n - chunk // 2), step):
            idx = list(range(start, min(n, start + chunk)))
            if len(idx) < 8:
                continue
            sub_kps = [kps[i] for i in idx]
            # the crop is placed from the usable frames only (nothing of the left-out frames is used)
            box = crop_box([kps[i] for i in idx if i not in banned and kps[i].num_faces <= 1], size, size)
            ctx = CropContext([frames[i] for i in idx], sub_kps, box, topology, work_size)
            usable = [i not in banned and kps[i].face is not None for i in idx]
            contexts.append((ctx, usable))
        log.info("%s: %d frames, %d left out for evaluation", path, n, len(banned))
    return contexts


def save_weights(net: SynthNet, path: str) -> None:
    """Write the shipped-format weights file (config + fp32 state dict) atomically."""
    ops_weights.save_weights(path, FAMILY, net, net.config_dict())


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``vidfx train jumpcut``."""
    ap = argparse.ArgumentParser(prog="vidfx train jumpcut", description=__doc__.split("\n")[0])
    ap.add_argument(
        "--split", default="train", choices=("train", "val", "all"), help="identities to train on (default train)"
    )
    ap.add_argument("--root", default=ids.DATA_ROOT, help="folder with talking/ and talking_more/")
    ap.add_argument("--data", default=None, help="a folder of talking-head videos (*.mp4) instead of a split")
    ap.add_argument("--out", default=DEFAULT_WEIGHTS, help="weights file to write")
    ap.add_argument("--checkpoint", default="jumpcut_train.ckpt", help="resumable checkpoint")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--size", type=int, default=512, help="frames are resized to SIZE x SIZE first")
    ap.add_argument("--config", choices=("small", "paper"), default="small")
    ap.add_argument("--real-prob", type=float, default=0.4, help="share of targets with their own keypoints")
    ap.add_argument(
        "--exclude", default="0,0,0", help="eval gaps left out: FRAMES,CASES,CONTEXT (for --data clips also evaluated)"
    )
    ap.add_argument("--feature-weight", type=float, default=0.5, help="feature-space reconstruction loss weight")
    ap.add_argument("--gan-weight", type=float, default=0.02, help="adversarial loss weight (0 = off)")
    ap.add_argument("--cache", default=os.path.join(os.path.expanduser("~"), ".cache", "vidfx", "jumpcut"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save-every", type=int, default=100)
    ap.add_argument(
        "--snapshot-every", type=int, default=0, help="also keep OUT_stepN.pt every N steps (candidates for selection)"
    )
    ap.add_argument("--time-limit", type=float, default=0, help="stop after this many minutes (0 = no limit)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", default=None, help="start from these weights (when there is no checkpoint yet)")
    ap.add_argument(
        "--flow-candidate",
        action="store_true",
        help="add the DIS flow-interpolated frame as a blend candidate (upgrades --init weights)",
    )
    ap.add_argument(
        "--long-gap-prob",
        type=float,
        default=0.0,
        help="share of examples with the longest gap (the transition length the node uses)",
    )
    ap.add_argument(
        "--keypoints",
        choices=("video", "static"),
        default="static",
        help="MediaPipe tracking ('video') or per-frame ('static', as the synthesizer) detection",
    )
    ap.add_argument(
        "--smooth-sigma", type=float, default=0.0, help="temporal keypoint smoothing (0 = raw, as the synthesizer)"
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    if args.data:
        clips = sorted(glob.glob(os.path.join(args.data, "*.mp4")))
    else:
        clips = [ids.clip_path(i, args.root) for i in ids.identities(args.split)]
    if not clips:
        print(f"vidfx train jumpcut: no *.mp4 in {args.data}", file=sys.stderr)
        return 3
    ops_weights.write_run_args(os.path.dirname(os.path.abspath(args.checkpoint)), args)
    cfg = SynthConfig() if args.config == "small" else SynthConfig.paper()
    cfg.flow_candidate = args.flow_candidate
    net = SynthNet(cfg)
    if args.init and not os.path.exists(args.checkpoint):
        net = load_net(args.init)
        if args.flow_candidate:
            net = SynthNet.with_flow_candidate(net)
        cfg = net.cfg
        log.info("initialised from %s", args.init)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    sharp = SharpLosses(args.feature_weight, args.gan_weight)
    step = 0
    if os.path.exists(args.checkpoint):
        ckpt = ops_weights.load_checkpoint(args.checkpoint)
        net = SynthNet(SynthConfig(**ckpt["config"]))  # the checkpoint's own architecture
        opt = torch.optim.Adam(net.parameters(), lr=args.lr)
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        if "sharp" in ckpt:
            sharp.load_state_dict(ckpt["sharp"])
        step = int(ckpt["step"])
        log.info("resumed from %s at step %d", args.checkpoint, step)
    topology = MediaPipeDetector(with_body=False).topology
    exclude = tuple(int(v) for v in args.exclude.split(","))
    contexts = build_contexts(
        clips, args.size, cfg.size, 40, exclude, args.cache, topology, args.keypoints, args.smooth_sigma
    )
    rng = random.Random(args.seed + step)
    t_start = time.time()
    losses = []
    while step < args.steps:
        n = min(args.save_every, args.steps - step)
        # cosine decay to 10 % of the learning rate
        for g in opt.param_groups:
            g["lr"] = float(args.lr * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * step / args.steps))))
        t0 = time.time()
        loss = train_steps(
            net,
            opt,
            contexts,
            n,
            args.batch,
            rng,
            args.real_prob,
            "smoothstep",
            long_gap_prob=args.long_gap_prob,
            sharp=sharp,
        )
        step += n
        losses.append(loss)
        log.info("step %d loss %.4f (%.2f s/step)", step, loss, (time.time() - t0) / n)
        ops_weights.save_checkpoint(
            args.checkpoint,
            {
                "model": net.state_dict(),
                "opt": opt.state_dict(),
                "sharp": sharp.state_dict(),
                "step": step,
                "config": net.config_dict(),
            },
        )
        save_weights(net, args.out)
        if args.snapshot_every and step % args.snapshot_every == 0:
            save_weights(net, f"{os.path.splitext(args.out)[0]}_step{step}.pt")
        if args.time_limit and time.time() - t_start > args.time_limit * 60:
            log.info("time limit reached at step %d", step)
            break
    save_weights(net, args.out)
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
