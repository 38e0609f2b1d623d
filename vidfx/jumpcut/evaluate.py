"""``vidfx eval jumpcut [--split val|train|all] [CLIPS...]``: simulated jump cuts on continuous
talking-head clips.

The clips are the identities of a split (``identities.VAL_IDS`` by default: people the shipped
prior was not trained on), or files given on the command line; each is read as the largest
square around the face, resized to ``--size`` (``identities.read_face_clip``). For each clip,
``--cases`` segments of ``--frames`` frames are removed (a simulated jump cut).
Each method synthesizes the removed frames from the frames around the gap only (the removed
frames are never shown to any method, adaptation included) and is compared with the real ones:

- PSNR and SSIM (RGB, 0..1, whole frame),
- landmark error: MediaPipe face-mesh landmarks re-detected on the synthesized and on the real
  frame, mean distance in pixels over the 478 points (frames where either detection fails are
  counted in ``missed`` and left out of the mean),
- sharpness: high-frequency energy (mean squared Laplacian of the grey image) of the
  synthesized frames inside the face box, divided by that of the two real frames around the
  cut (A and B) in the same box: 1.0 = as sharp as the real footage, below 1 = blurrier
  (:func:`sharpness`),
- seconds per transition (wall clock, CPU, keypoints and per-video adaptation included).

Rows: crossfade, flow (DIS) and ours, per clip (identity) and averaged; below the table, how
often each method has the best PSNR of a case. A PNG strip per case (real /
crossfade / flow / ours) goes to ``--strips``. ``--json FILE`` writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

import cv2
import kornia
import numpy as np
import torch

from . import identities as ids
from .video import to_uint8

METHODS = ("crossfade", "flow", "ours")
FACE_MARGIN = 0.15  # the sharpness box: the face landmarks' box grown by this share each side


def eval_gaps(num_frames: int, gap: int, cases: int, context: int) -> list[int]:
    """Start indices of the removed segments: spread evenly, leaving ``context`` frames each side.

    Shared with training, which leaves these segments out of the prior's training targets.
    """
    lo = context + 1
    hi = num_frames - gap - context - 1
    if hi < lo:
        lo, hi = 1, max(1, num_frames - gap - 1)
    if cases == 1:
        return [int((lo + hi) // 2)]
    return [int(round(lo + (hi - lo) * k / (cases - 1))) for k in range(cases)]


def _nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)).permute(2, 0, 1)[None]


def psnr(x: np.ndarray, y: np.ndarray) -> float:
    """PSNR in dB of two 0..1 (H, W, C) images (MSE floored at 1e-12)."""
    mse = float(np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2))
    return 10 * np.log10(1.0 / max(mse, 1e-12))


def ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Mean SSIM (Gaussian window 11, sigma 1.5, reflected borders) over the channels of two 0..1
    (H, W, C) images."""
    return float(kornia.metrics.ssim(_nchw(x), _nchw(y), 11, max_val=1.0, eps=0.0, padding="same").mean())


def high_frequency_energy(img: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Mean squared Laplacian (3x3) of the grey image inside ``box`` = (x0, y0, x1, y1).

    Shape: img :math:`(H, W, 3)` float 0..1.
    """
    x0, y0, x1, y1 = box
    grey = cv2.cvtColor(np.ascontiguousarray(img[y0:y1, x0:x1], np.float32), cv2.COLOR_RGB2GRAY)
    lap = cv2.Laplacian(grey, cv2.CV_32F, ksize=1)[1:-1, 1:-1]
    return float(np.mean(lap.astype(np.float64) ** 2))


def face_box(face: np.ndarray | None, shape: tuple[int, ...], margin: float = FACE_MARGIN) -> tuple[int, int, int, int]:
    """The landmarks' bounding box grown by ``margin`` each side and clipped to the image
    (the whole image when ``face`` is None). Shape: face :math:`(P, 2+)` pixels."""
    h, w = shape[:2]
    if face is None:
        return 0, 0, w, h
    (x0, y0), (x1, y1) = face[:, :2].min(0), face[:, :2].max(0)
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    return (
        int(max(0, x0 - mx)),
        int(max(0, y0 - my)),
        int(min(w, np.ceil(x1 + mx))),
        int(min(h, np.ceil(y1 + my))),
    )


def sharpness(synth: list[np.ndarray], real_ends: list[np.ndarray], box: tuple[int, int, int, int]) -> float:
    """High-frequency energy of the synthesized frames relative to the real frames around the
    cut, both in ``box``: 1.0 = as sharp as the real footage."""
    ref = float(np.mean([high_frequency_energy(f, box) for f in real_ends]))
    return float(np.mean([high_frequency_energy(f, box) for f in synth])) / max(ref, 1e-12)


class LandmarkScorer:
    """Re-detects face-mesh landmarks (static image mode) and measures their distance."""

    def __init__(self):
        from .keypoints import MediaPipeDetector

        self.det = MediaPipeDetector(video_mode=False, with_body=False)

    def face(self, img: np.ndarray) -> np.ndarray | None:
        """The face-mesh landmarks of a 0..1 image in pixels (None: no face)."""
        return self.det.detect(to_uint8(img)).face

    def error(self, synth: np.ndarray, kr: np.ndarray | None) -> float | None:
        """Mean distance in pixels of the landmarks of ``synth`` to ``kr`` (the real frame's,
        from :meth:`face`), or None when a face is missing in either."""
        ks = self.face(synth)
        if ks is None or kr is None:
            return None
        return float(np.linalg.norm(ks[:, :2] - kr[:, :2], axis=1).mean())


def save_strip(path: str, rows: list[list[np.ndarray]], thumb: int = 128) -> None:
    """Write a grid of small thumbnails (one row per method) as PNG."""
    lines = [
        np.concatenate([cv2.resize(to_uint8(f), (thumb, thumb), interpolation=cv2.INTER_AREA) for f in r], 1)
        for r in rows
    ]
    cv2.imwrite(path, cv2.cvtColor(np.concatenate(lines, 0), cv2.COLOR_RGB2BGR))


def run_method(method: str, before: list[np.ndarray], after: list[np.ndarray], num: int, engine) -> list[np.ndarray]:
    """Synthesize ``num`` frames between ``before[-1]`` and ``after[0]`` with one method."""
    from .synthesize import make_transition

    frames, _ = make_transition(method, before, after, num, synthesizer=engine)
    return frames


def format_table(rows: list[dict]) -> str:
    """The rows as a Markdown table."""
    head = "| method | clip | PSNR dB | SSIM | landmark err px | sharpness | missed | s / transition |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lm = "n/a" if r["landmark_error_px"] is None else f"{r['landmark_error_px']:.2f}"
        lines.append(
            f"| {r['method']} | {r['clip']} | {r['psnr']:.2f} | {r['ssim']:.4f} | {lm} | "
            f"{r['sharpness']:.3f} | {r.get('missed', 0)} | {r['seconds']:.2f} |"
        )
    return "\n".join(lines)


def psnr_wins(per: dict[str, dict[str, list[dict]]]) -> dict[str, dict[str, float]]:
    """For each method, the share of cases where its PSNR beats each other method
    (``{"ours": {"crossfade": 0.8, "flow": 0.7, "all": 0.6}}``; ``all``: beats every other)."""
    methods = list(per)
    out: dict[str, dict[str, float]] = {}
    for m in methods:
        cases = [(clip, k) for clip, recs in per[m].items() for k in range(len(recs))]
        if not cases:
            continue
        wins: dict[str, float] = {}
        beat_all = np.ones(len(cases), bool)
        for o in methods:
            if o == m:
                continue
            beats = np.array([per[m][c][k]["psnr"] > per[o][c][k]["psnr"] for c, k in cases])
            wins[o] = float(beats.mean())
            beat_all &= beats
        wins["all"] = float(beat_all.mean())
        out[m] = wins
    return out


DETECTION_LENGTHS = "2,6,12,30,60"


def detection_main(argv: list[str]) -> int:
    """``vidfx eval jumpcut --detection``: recall, precision and false cuts per minute of
    ``detect`` on simulated jump cuts (a segment of each length removed at random, seeded
    positions, ``--cases`` per clip and length) and on the uncut clips.

    A simulated cut counts as found when a cut is detected within +-1 frame of it; other
    detections within +-12 frames of it are false detections (precision). False cuts per
    minute: detections on the uncut clips per minute of uncut footage.
    """
    from . import detect
    from . import identities as ids

    ap = argparse.ArgumentParser(
        prog="vidfx eval jumpcut --detection", description=detection_main.__doc__.split("\n")[0]
    )
    ap.add_argument(
        "--split", default="val", choices=("val", "train", "all"), help="identities (identities.TRAIN_IDS / VAL_IDS)"
    )
    ap.add_argument("--identities", default="", help="comma-separated identities instead of a split (e.g. talking/2)")
    ap.add_argument("--lengths", default=DETECTION_LENGTHS, help="removed segment lengths, comma-separated")
    ap.add_argument("--cases", type=int, default=6, help="simulated cuts per clip and length")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sensitivity", type=float, default=detect.RATIO, help="higher = fewer cuts")
    ap.add_argument("--data", default=ids.DATA_ROOT, help="folder with talking/ and talking_more/")
    ap.add_argument("--cache", default="/tmp/vidfx_jumpcut_detect", help="per-clip feature cache ('' = none)")
    ap.add_argument("--json", dest="json_path", default=None, help="write the results as JSON here")
    ap.add_argument(
        "--baseline", action="store_true", help="score the old thumbnail-only detector (cuts.detect_cuts) instead"
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    def find(data, seq, pairs, exported) -> list[int]:
        if args.baseline:
            from .cuts import THUMB, detect_cuts

            small = [cv2.resize(data.thumbs[i], (THUMB, THUMB), interpolation=cv2.INTER_AREA) for i in seq]
            return detect_cuts([t.astype(np.float32) for t in small], args.sensitivity)
        sig = detect.raw_signals(data, seq, pairs, exported=exported)
        return detect.pick(detect.scores(sig), args.sensitivity)

    lengths = [int(x) for x in args.lengths.split(",") if x.strip()]
    per_len = {n: {"cases": 0, "found": 0, "false": 0} for n in lengths}
    case_rows, uncut_false, minutes, uncut_frames = [], 0, 0.0, {}
    idents = [i.strip() for i in args.identities.split(",") if i.strip()] or list(ids.identities(args.split))
    for ident in idents:
        data = detect.load_clip(ids.clip_path(ident, args.data), args.cache or None)
        pairs = detect.PairCache(data)
        # the sound as an exported edit holds it: one AAC generation, splices re-encoded
        exported = detect.ExportedAudio(data.audio) if data.audio is not None else None
        cuts = find(data, np.arange(len(data)), pairs, exported)
        cuts = detect.false_cuts(ident, cuts)  # real edits in the source are not false cuts
        uncut_false += len(cuts)
        uncut_frames[ident] = cuts
        minutes += len(data) / data.fps / 60
        rng = np.random.default_rng(args.seed * 1_000_003 + detect.zlib_crc(ident))
        found_here = 0
        for n in lengths:
            for start in detect.case_starts(len(data), n, args.cases, rng, detect.SOURCE_CUTS.get(ident, ())):
                seq, c = detect.case_window(len(data), start, n)
                hit, fp = detect.judge(find(data, seq, pairs, exported), c)
                per_len[n]["cases"] += 1
                per_len[n]["found"] += hit
                per_len[n]["false"] += fp
                found_here += hit
                case_rows.append({"clip": ident, "length": n, "cut": start, "found": hit, "false": fp})
        logging.info(
            "%s: %d frames, %.1f fps, uncut false cuts %s, found %d", ident, len(data), data.fps, cuts, found_here
        )
    rows = []
    for n in lengths + ["all"]:
        r = per_len[n] if n != "all" else {k: sum(v[k] for v in per_len.values()) for k in ("cases", "found", "false")}
        tp, fp = r["found"], r["false"]
        rows.append(
            {
                "length": n,
                "cases": r["cases"],
                "recall": tp / r["cases"] if r["cases"] else None,
                "precision": tp / (tp + fp) if tp + fp else None,
            }
        )
    fpm = uncut_false / minutes if minutes else 0.0
    total = rows[-1]
    tp_all = total["recall"] * total["cases"] if total["cases"] else 0
    precision_all = tp_all / (tp_all + sum(v["false"] for v in per_len.values()) + uncut_false) if tp_all else None
    name = args.split if not args.identities else "custom"
    print(f"split {name}: {len(idents)} identities, {minutes:.2f} min uncut, sensitivity {args.sensitivity}")
    print("| removed frames | cases | recall | precision |\n|---|---|---|---|")
    for r in rows:
        rec = "n/a" if r["recall"] is None else f"{r['recall']:.3f}"
        pre = "n/a" if r["precision"] is None else f"{r['precision']:.3f}"
        print(f"| {r['length']} | {r['cases']} | {rec} | {pre} |")
    print(f"false cuts per minute (uncut clips): {fpm:.2f} ({uncut_false} in {minutes:.2f} min)")
    print(f"precision incl. uncut false cuts: {'n/a' if precision_all is None else f'{precision_all:.3f}'}")
    if args.json_path:
        out = {
            "recall": total["recall"],
            "precision": total["precision"],
            "false_cuts_per_minute": fpm,
            "precision_with_uncut": precision_all,
            "per_length": rows[:-1],
            "split": name,
            "identities": idents,
            "sensitivity": args.sensitivity,
            "detector": "cuts.detect_cuts (thumbnails only)" if args.baseline else "detect",
            "seed": args.seed,
            "uncut_minutes": minutes,
            "uncut_false_cuts": uncut_false,
            "uncut_false_cut_frames": uncut_frames,
            "cases": case_rows,
        }
        with open(args.json_path, "w") as fh:
            json.dump(out, fh, indent=1)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``vidfx eval jumpcut``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--detection" in argv:
        return detection_main([a for a in argv if a != "--detection"])
    ap = argparse.ArgumentParser(prog="vidfx eval jumpcut", description=__doc__.split("\n")[0])
    ap.add_argument("clips", nargs="*", default=None, help="continuous talking-head clips instead of a split")
    ap.add_argument(
        "--split", default="val", choices=("val", "train", "all"), help="identities (identities.TRAIN_IDS / VAL_IDS)"
    )
    ap.add_argument("--data", default=ids.DATA_ROOT, help="folder with talking/ and talking_more/")
    ap.add_argument("--frames", type=int, default=12, help="removed / synthesized frames per case")
    ap.add_argument("--cases", type=int, default=3, help="simulated cuts per clip")
    ap.add_argument("--size", type=int, default=512, help="frames are resized to SIZE x SIZE")
    ap.add_argument("--context", type=int, default=12, help="frames each side available to the methods")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of crossfade,flow,ours")
    ap.add_argument("--weights", default=None, help="synthesizer weights (default: the shipped prior)")
    ap.add_argument("--adapt-steps", type=int, default=None, help="per-video adaptation steps (default: model's)")
    ap.add_argument("--detail", type=float, default=None, help="fine detail from the top source (default: node's)")
    ap.add_argument("--energy", type=float, default=None, help="detail energy restored, 0..1 (default 1)")
    ap.add_argument(
        "--still",
        type=float,
        default=None,
        help="fade into the crossfade below this motion, working-grid pixels; 0 = off (default 1)",
    )
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--strips", default="runs/jumpcut_strips", help="folder for PNG strips ('' = none)")
    ap.add_argument("--json", dest="json_path", default=None, help="also write the rows as JSON here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import torch

    torch.set_num_threads(args.threads)
    clips = args.clips or [ids.clip_path(i, args.data) for i in ids.identities(args.split)]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        print(f"vidfx eval jumpcut: unknown method(s) {', '.join(bad)}", file=sys.stderr)
        return 2
    engine = None
    if "ours" in methods:
        from .synthesize import Synthesizer

        knobs = (("detail", args.detail), ("energy", args.energy), ("still", args.still))
        extra = {k: v for k, v in knobs if v is not None}
        engine = Synthesizer.load(args.weights, adapt_steps=args.adapt_steps, **extra)
    scorer = LandmarkScorer()
    if args.strips:
        os.makedirs(args.strips, exist_ok=True)

    per = {m: {} for m in methods}  # method -> clip -> list of per-case dicts
    real_sharpness = []  # the removed real frames against their own ends: what 1.0 is not quite
    for clip in clips:
        name = os.path.splitext(os.path.relpath(clip, args.data))[0] if not args.clips else os.path.basename(clip)
        frames_u8, _ = ids.read_face_clip(clip, size=args.size)
        frames = [f.astype(np.float32) / 255.0 for f in frames_u8]
        n = args.frames
        for case, s in enumerate(eval_gaps(len(frames), n, args.cases, args.context)):
            a_idx, b_idx = s - 1, s + n
            before = frames[max(0, a_idx - args.context) : a_idx + 1]
            after = frames[b_idx : b_idx + args.context + 1]
            real = frames[s : s + n]
            real_faces = [scorer.face(r) for r in real]  # once per case, not once per method
            box = face_box(scorer.face(frames[a_idx]), frames[a_idx].shape)
            real_sharpness.append(sharpness(real, [frames[a_idx], frames[b_idx]], box))
            strip_rows = [[frames[a_idx]] + real[::3] + [frames[b_idx]]]
            for m in methods:
                t0 = time.perf_counter()
                out = run_method(m, before, after, n, engine)
                secs = time.perf_counter() - t0
                errs = [scorer.error(o, kr) for o, kr in zip(out, real_faces)]
                got = [e for e in errs if e is not None]
                rec = {
                    "psnr": float(np.mean([psnr(o, r) for o, r in zip(out, real)])),
                    "ssim": float(np.mean([ssim(o, r) for o, r in zip(out, real)])),
                    "landmark_error_px": float(np.mean(got)) if got else None,
                    "missed": len(errs) - len(got),
                    "sharpness": sharpness(out, [frames[a_idx], frames[b_idx]], box),
                    "seconds": secs,
                }
                per[m].setdefault(name, []).append(rec)
                strip_rows.append([frames[a_idx]] + out[::3] + [frames[b_idx]])
                logging.info(
                    "%s case %d (frames %d..%d) %s: PSNR %.2f SSIM %.4f LM %s sharpness %.3f (%.1fs)",
                    name,
                    case,
                    s,
                    s + n - 1,
                    m,
                    rec["psnr"],
                    rec["ssim"],
                    "n/a" if rec["landmark_error_px"] is None else f"{rec['landmark_error_px']:.2f}",
                    rec["sharpness"],
                    secs,
                )
            if args.strips:
                save_strip(os.path.join(args.strips, f"{name.replace('/', '_')}_case{case}.png"), strip_rows)

    rows = []
    for m in methods:
        all_recs = []
        for clip_name, recs in per[m].items():
            rows.append(_row(m, clip_name, recs))
            all_recs += recs
        rows.append(_row(m, "average", all_recs))
    print(format_table(rows))
    print(f"sharpness of the real removed frames themselves (reference): {np.mean(real_sharpness):.3f}")
    for m, wins in psnr_wins(per).items():
        others = ", ".join(f"beats {o} in {v:.0%}" for o, v in wins.items() if o != "all")
        print(f"{m}: best PSNR in {wins['all']:.0%} of cases; {others}")
    if args.json_path:
        with open(args.json_path, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


def _row(method: str, clip: str, recs: list[dict]) -> dict:
    lms = [r["landmark_error_px"] for r in recs if r["landmark_error_px"] is not None]
    return {
        "method": method,
        "clip": clip,
        "psnr": float(np.mean([r["psnr"] for r in recs])),
        "ssim": float(np.mean([r["ssim"] for r in recs])),
        "landmark_error_px": float(np.mean(lms)) if lms else None,
        "missed": int(sum(r["missed"] for r in recs)),
        "sharpness": float(np.mean([r["sharpness"] for r in recs])),
        "seconds": float(np.mean([r["seconds"] for r in recs])),
    }


if __name__ == "__main__":
    sys.exit(main())
