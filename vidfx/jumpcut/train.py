"""``vidfx train jumpcut``: train the synthesizer prior on talking-head videos.

Examples are random source/target pairs from the same video: a target frame t between two
frames a < t < b, sources [a-k1, a, b, b+k2], and target keypoints that are either frame t's own
(plain reenactment) or interpolated between a and b (exactly what happens at a cut). Frames in
the segments the evaluation removes (``evaluate.eval_gaps``) are never used, so the evaluation's
real frames stay unseen.

Resumes from ``--checkpoint`` if it exists; writes the shipped weights (``--out``) at the end and
at every checkpoint.
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

from .evaluate import eval_gaps
from .keypoints import MediaPipeDetector, smooth_sequence
from .model import SynthConfig, SynthNet
from .synthesize import DEFAULT_WEIGHTS, CropContext, crop_box, load_net, train_steps
from .video import read_clip

log = logging.getLogger("vidfx.jumpcut.train")


def load_clip(path: str, size: int, cache_dir: str | None, mode: str = "video", sigma: float = 1.0):
    """Frames (uint8, SIZE x SIZE) and MediaPipe keypoints of one clip (keypoints cached):
    ``mode`` "video" (tracking) or "static" (per frame, as the synthesizer detects them), smoothed
    over time with ``sigma`` (0 = raw, as the synthesizer uses them)."""
    frames, _ = read_clip(path, size=size)
    cache = None
    if cache_dir:
        os.makedirs(cache_dir, exist_ok=True)
        st = os.stat(path)
        tag = "" if mode == "video" else f"_{mode}"
        cache = os.path.join(cache_dir, f"{os.path.basename(path)}_{st.st_size}_{size}{tag}.kps.pkl")
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


def build_contexts(clips: list[str], size: int, work_size: int, chunk: int, exclude: tuple[int, int, int],
                   cache_dir: str | None, topology, mode: str = "video", sigma: float = 1.0):
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
    """Write the shipped weights file (config + fp32 state dict) atomically."""
    tmp = path + ".tmp"
    torch.save({"config": net.config_dict(), "model": net.state_dict()}, tmp)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``vidfx train jumpcut``."""
    ap = argparse.ArgumentParser(prog="vidfx train jumpcut", description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="/work/shared/data/talking", help="folder of talking-head videos (*.mp4)")
    ap.add_argument("--out", default=DEFAULT_WEIGHTS, help="weights file to write")
    ap.add_argument("--checkpoint", default="jumpcut_train.ckpt", help="resumable checkpoint")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--size", type=int, default=512, help="frames are resized to SIZE x SIZE first")
    ap.add_argument("--config", choices=("small", "paper"), default="small")
    ap.add_argument("--real-prob", type=float, default=0.4, help="share of targets with their own keypoints")
    ap.add_argument("--exclude", default="12,3,12", help="eval gaps left out: FRAMES,CASES,CONTEXT ('0,0,0' = none)")
    ap.add_argument("--cache", default=os.path.join(os.path.expanduser("~"), ".cache", "vidfx", "jumpcut"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save-every", type=int, default=100)
    ap.add_argument("--time-limit", type=float, default=0, help="stop after this many minutes (0 = no limit)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", default=None, help="start from these weights (when there is no checkpoint yet)")
    ap.add_argument("--flow-candidate", action="store_true",
                    help="add the DIS flow-interpolated frame as a blend candidate (upgrades --init weights)")
    ap.add_argument("--long-gap-prob", type=float, default=0.0,
                    help="share of examples with the longest gap (the transition length the node uses)")
    ap.add_argument("--keypoints", choices=("video", "static"), default="static",
                    help="MediaPipe tracking ('video') or per-frame ('static', as the synthesizer) detection")
    ap.add_argument("--smooth-sigma", type=float, default=0.0,
                    help="temporal keypoint smoothing (0 = raw, as the synthesizer)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    clips = sorted(glob.glob(os.path.join(args.data, "*.mp4")))
    if not clips:
        print(f"vidfx train jumpcut: no *.mp4 in {args.data}", file=sys.stderr)
        return 3
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
    step = 0
    if os.path.exists(args.checkpoint):
        ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
        net = SynthNet(SynthConfig(**ckpt["config"]))  # the checkpoint's own architecture
        opt = torch.optim.Adam(net.parameters(), lr=args.lr)
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        step = int(ckpt["step"])
        log.info("resumed from %s at step %d", args.checkpoint, step)
    topology = MediaPipeDetector(with_body=False).topology
    exclude = tuple(int(v) for v in args.exclude.split(","))
    contexts = build_contexts(clips, args.size, cfg.size, 40, exclude, args.cache, topology, args.keypoints,
                              args.smooth_sigma)
    rng = random.Random(args.seed + step)
    t_start = time.time()
    losses = []
    while step < args.steps:
        n = min(args.save_every, args.steps - step)
        # cosine decay to 10 % of the learning rate
        for g in opt.param_groups:
            g["lr"] = float(args.lr * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * step / args.steps))))
        t0 = time.time()
        loss = train_steps(net, opt, contexts, n, args.batch, rng, args.real_prob, "smoothstep",
                           long_gap_prob=args.long_gap_prob)
        step += n
        losses.append(loss)
        log.info("step %d loss %.4f (%.2f s/step)", step, loss, (time.time() - t0) / n)
        tmp = args.checkpoint + ".tmp"
        torch.save({"model": net.state_dict(), "opt": opt.state_dict(), "step": step, "config": net.config_dict()}, tmp)
        os.replace(tmp, args.checkpoint)
        save_weights(net, args.out)
        if args.time_limit and time.time() - t_start > args.time_limit * 60:
            log.info("time limit reached at step %d", step)
            break
    save_weights(net, args.out)
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
