"""``vidfx eval fill [CLIPS...] [--json FILE]``: object removal on synthetic holes with known truth.

Protocol. Each clip's first ``--frames`` frames are decoded (PyAV, RGB) and downscaled (area) to
a width of at most ``--width``. An object silhouette from the CamVid *validation* labels
(``camvid/valannot``; training uses ``trainannot``) is laid over them as a hole track
(``maskgen.object_track``, seeded per clip from ``--seed`` and a CRC-32 of the clip name). The
hole only hides real pixels, so the original frames are the truth. Two regimes:

- ``moving``: hand-held or panning clips (``clips/``), the hole moves (``moving=True``): the
  background behind it shows up in other frames;
- ``static``: tripod clips (``scenes/``), a static hole (``moving=False``): the background
  behind it is never shown.

The default clips each have their own regime; clips given on the command line are evaluated in
the regime(s) of ``--regime`` (default both; with the default clips it picks which to run).

Methods (rows) see the frames with the hole pixels set to 0, never the truth there: ``telea``
and ``ns`` (``cv2.inpaint``, radius 5, per frame on uint8), ``propagation`` (``Propagator``,
then Telea for what it leaves), ``ours`` (``pipeline.fill_clip``). Each output is composited
(known pixels are the input's) before scoring. Metrics, inside the hole only:

- ``psnr_masked``: dB from the MSE over all hole pixels (RGB, 0..1) of all frames; capped at
  ``PSNR_CAP`` = 100 dB (identical pixels);
- ``ssim_masked``: Gaussian SSIM (window 11, sigma 1.5, kornia), RGB map averaged over channels,
  then over all hole pixels;
- ``warp_error``: temporal warping error x 100 (in percent of the 0..1 range): DIS "medium" flow of
  the *truth* from t to t+1, the output's frame t+1 warped back to t, mean absolute difference
  (RGB) over the hole pixels of frame t where the truth flow is forward-backward consistent;
- ``fd``: Fréchet distance (features of :mod:`vidfx.ops.features`: the CamVid segmentation
  network's pooled encoder levels 1-3) between 64x64 patches of the output and the same patches
  of the truth, one patch per frame: the hole's bounding box, grown by 25% per side to a square,
  resized;
- ``seconds_per_frame``: wall time of the method divided by the number of frames.

Rows per clip, plus an ``average`` row per method and regime: the mean of the clips' values, except
``fd``, which is computed from the patch features of all clips of the regime pooled. ``--json
FILE`` writes the rows as a JSON list (atomically).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import kornia
import numpy as np
import torch

from ..core.errors import MediaError
from ..ops.features import frechet_distance, patch_features
from ..ops.temporal import truth_flows, warp_error
from ..ops.weights import read_weights
from .data import EVAL_SCENES, inpaint

DATA_ROOT = Path(os.environ.get("VIDFX_DATA", "/work/shared/data"))
MOVING_CLIPS = ("bear.mp4", "paragliding-launch.mp4", "apple.mp4", "pillow.mp4", "teddy.mp4")  # in clips/
STATIC_CLIPS = EVAL_SCENES  # scenes/: the tripod shots training never reads
REGIMES = ("moving", "static")
METHODS = ("telea", "ns", "propagation", "ours")
METRICS = ("psnr_masked", "ssim_masked", "warp_error", "fd", "seconds_per_frame")
PSNR_CAP = 100.0  # dB, for identical hole pixels
INPAINT_RADIUS = 5
SSIM_WINDOW = 11
PATCH = 64  # side of the FD patches
PATCH_MARGIN = 0.25  # the hole's bounding box grows by this fraction of its longer side, per side


def default_clips(data: Path = DATA_ROOT) -> list[tuple[Path, str]]:
    """The default (clip path, regime) pairs: moving-camera clips, then tripod clips."""
    return [(data / "clips" / n, "moving") for n in MOVING_CLIPS] + [
        (data / "scenes" / n, "static") for n in STATIC_CLIPS
    ]


def clip_name(path: str | os.PathLike[str]) -> str:
    """A clip's name in the rows: its file name without the extension."""
    return Path(path).stem


def clip_seed(name: str, seed: int) -> int:
    """Per-clip seed: stable across runs and machines (CRC-32 of the name, not ``hash()``)."""
    return (zlib.crc32(name.encode()) ^ (seed * 0x9E3779B1)) & 0xFFFFFFFF


def load_clip(path: str | os.PathLike[str], frames: int, width: int) -> np.ndarray:
    """The first ``frames`` frames of a video, RGB, downscaled (area) to a width of at most ``width``.

    Shape:
        - output: float32 :math:`(T, H, W, 3)`, 0..1, T <= ``frames``
    A file without decodable video frames is a ``MediaError`` naming it.
    """
    from ..io.frames import rgb_frames

    out = []
    for img in rgb_frames(path, frames):
        h, w = img.shape[:2]
        if w > width:
            size = (width, max(1, round(h * width / w)))
            img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        out.append(img)
    if not out:
        raise MediaError(f"fill eval: {os.fspath(path)} has no decodable video frames")
    return np.stack(out).astype(np.float32) / 255.0


def make_case(frames: np.ndarray, regime: str, seed: int, shapes: Any) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic removal: the truth frames (unchanged) and a hole track over them.

    ``shapes`` is a ``maskgen.ObjectShapes``; the hole moves in the ``moving`` regime and stays
    put in the ``static`` one.

    Shape:
        - frames: float32 :math:`(T, H, W, 3)`, 0..1
        - output: (frames, holes): the same frames, bool :math:`(T, H, W)`
    """
    from . import maskgen

    if regime not in REGIMES:
        raise ValueError(f"fill eval: unknown regime {regime!r}; valid: {', '.join(REGIMES)}")
    t, h, w = frames.shape[:3]
    rng = np.random.default_rng(seed)
    holes = maskgen.object_track(h, w, t, rng, shapes, moving=regime == "moving")
    return frames, np.asarray(holes, bool)


@dataclass
class Case:
    """One clip in one regime: truth frames (T, H, W, 3) float32 0..1 and holes (T, H, W) bool."""

    name: str
    regime: str
    truth: np.ndarray
    holes: np.ndarray
    flows: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)  # truth_flows, cached

    def masked(self) -> np.ndarray:
        """The frames the methods see: hole pixels set to 0. Shape :math:`(T, H, W, 3)`."""
        return np.where(self.holes[..., None], np.float32(0), self.truth).astype(np.float32)


# ---------------------------------------------------------------- metrics


def masked_psnr(output: np.ndarray, truth: np.ndarray, holes: np.ndarray) -> float:
    """PSNR in dB (0..1 range) from the MSE over all hole pixels and channels of all frames;
    ``PSNR_CAP`` (100 dB) when they are identical. NaN when there are no hole pixels.

    Shape:
        - output, truth: :math:`(T, H, W, 3)` (or one frame, :math:`(H, W, 3)`)
        - holes: bool :math:`(T, H, W)` (or :math:`(H, W)`)
    """
    sel = np.asarray(holes, bool)
    if not sel.any():
        return math.nan
    diff = output[sel].astype(np.float64) - truth[sel].astype(np.float64)
    mse = float(np.mean(diff**2))
    return PSNR_CAP if mse <= 10 ** (-PSNR_CAP / 10) else 10 * math.log10(1.0 / mse)


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return None
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def _ssim_sums(output: np.ndarray, truth: np.ndarray, hole: np.ndarray) -> tuple[float, int]:
    """Sum of the channel-mean SSIM map over one frame's hole pixels, and their count. Computed
    on the hole's bounding box plus the window radius, which gives the hole pixels the same
    values as the whole frame would (their windows never reach the crop's padding)."""
    box = _bbox(hole)
    if box is None:
        return 0.0, 0
    r = SSIM_WINDOW // 2
    h, w = hole.shape
    y0, y1, x0, x1 = max(box[0] - r, 0), min(box[1] + r, h), max(box[2] - r, 0), min(box[3] + r, w)

    def nchw(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x[y0:y1, x0:x1], np.float32)).permute(2, 0, 1)[None]

    ssim_map = kornia.metrics.ssim(nchw(output), nchw(truth), SSIM_WINDOW, max_val=1.0, padding="same")
    smap = ssim_map[0].mean(0).numpy()
    sel = hole[y0:y1, x0:x1]
    return float(smap[sel].astype(np.float64).sum()), int(sel.sum())


def masked_ssim(output: np.ndarray, truth: np.ndarray, holes: np.ndarray) -> float:
    """SSIM (Gaussian window 11, sigma 1.5, RGB map averaged over channels) averaged over all
    hole pixels of all frames; 1 for identical pixels, NaN when there are no hole pixels.

    Shape:
        - output, truth: :math:`(T, H, W, 3)` float 0..1
        - holes: bool :math:`(T, H, W)`
    """
    total, count = 0.0, 0
    for o, t, m in zip(output, truth, np.asarray(holes, bool)):
        s, n = _ssim_sums(o, t, m)
        total, count = total + s, count + n
    return total / count if count else math.nan


def patch_boxes(holes: np.ndarray, margin: float = PATCH_MARGIN) -> list[tuple[int, int, int, int, int]]:
    """One square crop per frame with a hole: (t, y0, y1, x0, x1), centred on the hole's bounding
    box, side = its longer side x (1 + 2 ``margin``), shifted to lie inside the frame (and no
    larger than the frame's shorter side).

    Shape:
        - holes: bool :math:`(T, H, W)`
    """
    _, h, w = holes.shape
    boxes = []
    for t, mask in enumerate(np.asarray(holes, bool)):
        box = _bbox(mask)
        if box is None:
            continue
        y0, y1, x0, x1 = box
        side = min(max(4, round(max(y1 - y0, x1 - x0) * (1 + 2 * margin))), h, w)
        cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
        top = int(min(max(round(cy - side / 2), 0), h - side))
        left = int(min(max(round(cx - side / 2), 0), w - side))
        boxes.append((t, top, top + side, left, left + side))
    return boxes


def crop_patches(
    frames: np.ndarray, boxes: Sequence[tuple[int, int, int, int, int]], size: int = PATCH
) -> torch.Tensor:
    """The ``boxes`` of :func:`patch_boxes` cut from ``frames`` and resized to ``size`` x ``size``
    (area when shrinking, linear when enlarging).

    Shape:
        - frames: :math:`(T, H, W, 3)` float 0..1
        - output: float32 :math:`(N, 3, size, size)`
    """
    out = np.zeros((len(boxes), size, size, 3), np.float32)
    for i, (t, y0, y1, x0, x1) in enumerate(boxes):
        crop = np.ascontiguousarray(frames[t, y0:y1, x0:x1], np.float32)
        interp = cv2.INTER_AREA if y1 - y0 >= size else cv2.INTER_LINEAR
        out[i] = cv2.resize(crop, (size, size), interpolation=interp)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


# ---------------------------------------------------------------- methods


def inpaint_frames(frames: np.ndarray, holes: np.ndarray, method: str) -> np.ndarray:
    """:func:`vidfx.fill.data.inpaint` (``telea`` or ``ns``, radius ``INPAINT_RADIUS``) on each
    frame, through uint8.

    Shape:
        - frames: :math:`(T, H, W, 3)` float 0..1; holes: bool :math:`(T, H, W)`
        - output: float32 :math:`(T, H, W, 3)`, 0..1
    """

    out = np.array(frames, np.float32, copy=True)
    for t, (frame, hole) in enumerate(zip(frames, np.asarray(holes, bool))):
        if hole.any():
            out[t] = inpaint(frame, hole, method, INPAINT_RADIUS)
    return out


def run_telea(frames: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """Telea inpainting per frame."""
    return inpaint_frames(frames, holes, "telea")


def run_ns(frames: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """Navier-Stokes inpainting per frame."""
    return inpaint_frames(frames, holes, "ns")


def run_propagation(frames: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """Flow-guided propagation (``Propagator`` with its default config), Telea for what is left."""
    from .propagate import PropagationConfig, Propagator

    filled, remaining = Propagator(PropagationConfig()).run(frames, holes)
    return inpaint_frames(np.asarray(filled, np.float32), np.asarray(remaining, bool), "telea")


def run_ours(frames: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """The full method, ``pipeline.fill_clip``."""
    from .pipeline import fill_clip

    return np.asarray(fill_clip(frames, holes), np.float32)


Runner = Callable[[np.ndarray, np.ndarray], np.ndarray]
RUNNERS: dict[str, Runner] = {
    "telea": run_telea,
    "ns": run_ns,
    "propagation": run_propagation,
    "ours": run_ours,
}
METHOD_MODULES = {"propagation": "propagate", "ours": "pipeline"}


def generator_runner(steps: int = 0, weights: str = "") -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The full method with another generator: ``weights`` (a distilled student; empty = the
    shipped model) sampled with ``steps`` steps (0 = the weights' own)."""
    from .pipeline import FillSettings, fill_clip

    settings = FillSettings(steps=steps, weights=weights)
    return lambda frames, holes: np.asarray(fill_clip(frames, holes, settings), np.float32)


def add_generators(students: Sequence[str], methods: Sequence[str]) -> tuple[dict[str, Runner], dict[str, int]]:
    """The generator rows of the distillation table as methods: ``teacher-<steps>`` (the
    teacher model at that many steps) among ``methods``, and ``NAME=FILE`` students (at the
    steps and with the sampler in their metadata). Returns (``RUNNERS`` with them added, each
    added method's step count: its rows get a ``steps`` field)."""
    runners = dict(RUNNERS)
    steps: dict[str, int] = {}
    for m in methods:
        if m.startswith("teacher-") and m[8:].isdigit() and int(m[8:]) > 0:
            runners[m] = generator_runner(steps=int(m[8:]))
            steps[m] = int(m[8:])
    for item in students:
        name, sep, path = item.partition("=")
        if not sep or not name or not Path(path).is_file():
            raise ValueError(f"--student wants NAME=FILE with an existing file, got {item!r}")
        runners[name] = generator_runner(weights=path)  # at the student's own steps and sampler
        steps[name] = int(read_weights(path, "fill").meta.get("steps", 1))
    return runners, steps


def check_methods(methods: Sequence[str], runners: Mapping[str, Runner] = RUNNERS) -> None:
    """Raise ``ValueError`` (one line) for an unknown method or one whose module is missing."""
    import importlib

    for m in methods:
        if m not in runners:
            raise ValueError(f"unknown method {m!r}; valid: {', '.join(METHODS)}, teacher-<steps>, --student names")
        if m in METHOD_MODULES:
            try:
                importlib.import_module(f"{__package__}.{METHOD_MODULES[m]}")
            except ImportError as exc:
                raise ValueError(f"method {m!r} is not available: {exc}") from None


# ---------------------------------------------------------------- evaluation


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads. The metrics use one: their tensors are small
    crops, and extra threads on a machine busy with other work made them many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _clean(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _nanmean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def evaluate(
    cases: Sequence[Case],
    methods: Sequence[str] = METHODS,
    log: Callable[[str], None] | None = None,
    runners: Mapping[str, Runner] = RUNNERS,
) -> list[dict]:
    """Run ``methods`` on ``cases`` and score them (see the module docstring).

    Returns rows ``{"method", "regime", "clip", "psnr_masked", "ssim_masked", "warp_error",
    "fd", "seconds_per_frame"}``: per clip, then an ``average`` row per method and regime. A
    metric that cannot be computed (no hole pixels, no consistent flow) is None.
    """
    log = log or (lambda s: None)
    per: dict[tuple[str, str], list[dict]] = {}
    feats: dict[tuple[str, str], list[np.ndarray]] = {}
    truth_feats: dict[str, list[np.ndarray]] = {}
    for case in cases:
        masked = case.masked()
        with torch_threads(1):
            flows = case.flows if case.flows is not None else truth_flows(case.truth)
            boxes = patch_boxes(case.holes)
            tf = patch_features(crop_patches(case.truth, boxes))
        truth_feats.setdefault(case.regime, []).append(tf)
        for m in methods:
            t0 = time.perf_counter()
            out = runners[m](masked.copy(), case.holes.copy())
            seconds = time.perf_counter() - t0
            out = np.where(case.holes[..., None], np.clip(out, 0, 1), case.truth).astype(np.float32)
            with torch_threads(1):
                of = patch_features(crop_patches(out, boxes))
                row = {
                    "method": m,
                    "regime": case.regime,
                    "clip": case.name,
                    "psnr_masked": _clean(masked_psnr(out, case.truth, case.holes)),
                    "ssim_masked": _clean(masked_ssim(out, case.truth, case.holes)),
                    "warp_error": _clean(warp_error(out, case.truth, case.holes, flows)),
                    "fd": _clean(frechet_distance(of, tf)) if len(boxes) else None,
                    "seconds_per_frame": seconds / len(case.truth),
                }
            feats.setdefault((m, case.regime), []).append(of)
            per.setdefault((m, case.regime), []).append(row)
            log(
                f"{case.regime:>6} {case.name:<26} {m:<11} psnr {row['psnr_masked'] or 0:6.2f} "
                f"ssim {row['ssim_masked'] or 0:.4f} {seconds:6.1f} s"
            )
    rows: list[dict] = []
    for regime in REGIMES:
        for m in methods:
            clip_rows = per.get((m, regime), [])
            if not clip_rows:
                continue
            rows.extend(clip_rows)
            avg: dict[str, Any] = {"method": m, "regime": regime, "clip": "average"}
            for k in METRICS:
                avg[k] = _nanmean([r[k] for r in clip_rows])
            of_all = np.concatenate(feats[(m, regime)])
            tf_all = np.concatenate(truth_feats[regime])
            avg["fd"] = _clean(frechet_distance(of_all, tf_all)) if len(tf_all) else None
            rows.append(avg)
    return rows


def _fmt(v: float | None, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def format_table(rows: list[dict]) -> str:
    """The rows as Markdown tables, one per regime: clips in order (each with its methods), the
    averages last."""
    out = []
    for regime in REGIMES:
        rs = [r for r in rows if r["regime"] == regime]
        if not rs:
            continue
        clips = list(dict.fromkeys(r["clip"] for r in rs if r["clip"] != "average")) + ["average"]
        methods = list(dict.fromkeys(r["method"] for r in rs))
        lines = [
            f"{regime} regime",
            "",
            "| clip | method | PSNR dB (hole) | SSIM (hole) | warp err x100 | FD | s / frame |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in clips:
            for m in methods:
                for r in rs:
                    if r["clip"] == c and r["method"] == m:
                        lines.append(
                            f"| {c} | {m} | {_fmt(r['psnr_masked'], '.2f')} | {_fmt(r['ssim_masked'], '.4f')} | "
                            f"{_fmt(r['warp_error'], '.3f')} | {_fmt(r['fd'], '.3f')} | "
                            f"{_fmt(r['seconds_per_frame'], '.3f')} |"
                        )
        out.append("\n".join(lines))
    return "\n\n".join(out)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """``json.dump`` to a temporary file in the same folder, then ``os.replace`` it over ``path``."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or Path("."))
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``vidfx eval fill``; returns an exit code."""
    doc = __doc__ or ""
    p = argparse.ArgumentParser(prog="vidfx eval fill", description=doc.split("\n")[0])
    p.add_argument("clips", nargs="*", help="video files (default: the moving and static sets of the data folder)")
    p.add_argument(
        "--regime",
        choices=("moving", "static", "both"),
        default="both",
        help="regime(s) for the given clips; with the default clips, which regimes to run",
    )
    p.add_argument("--methods", nargs="+", default=list(METHODS), help=f"subset of {' '.join(METHODS)}")
    p.add_argument("--frames", type=int, default=24, help="frames decoded per clip")
    p.add_argument("--width", type=int, default=854, help="frames wider than this are downscaled (area)")
    p.add_argument("--seed", type=int, default=0, help="mask seed (combined with each clip's name)")
    p.add_argument("--data", default=str(DATA_ROOT), help="data folder (clips/, scenes/, camvid/valannot/)")
    p.add_argument("--shape-files", type=int, default=None, help="use only this many CamVid label files")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", dest="json_path", default=None, help="also write the rows as JSON here")
    p.add_argument(
        "--student",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="also evaluate a distilled generator (a fill weights file, one step) as method NAME; repeatable",
    )
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    if args.frames < 2 or args.width < 16:
        print("error: --frames must be >= 2 and --width >= 16", file=sys.stderr)
        return 2
    try:
        runners, generator_steps = add_generators(args.student, args.methods)
        args.methods += [m for m in generator_steps if m not in args.methods]
        check_methods(args.methods, runners)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    regimes = REGIMES if args.regime == "both" else (args.regime,)
    data = Path(args.data)
    if args.clips:
        jobs = [(Path(c), r) for c in args.clips for r in regimes]
    else:
        jobs = [(c, r) for c, r in default_clips(data) if r in regimes]

    from .maskgen import ObjectShapes

    t_start = time.perf_counter()
    try:
        shapes = ObjectShapes.from_camvid(data / "camvid" / "valannot", max_files=args.shape_files)
        cases = []
        loaded: dict[Path, np.ndarray] = {}
        for path, regime in jobs:
            if path not in loaded:
                loaded[path] = load_clip(path, args.frames, args.width)
            name = clip_name(path)
            truth, holes = make_case(loaded[path], regime, clip_seed(name, args.seed), shapes)
            cases.append(Case(name, regime, truth, holes))
    except (MediaError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    rows = evaluate(cases, args.methods, log=lambda s: print(s, file=sys.stderr, flush=True), runners=runners)
    for row in rows:
        if row["method"] in generator_steps:
            row["steps"] = generator_steps[row["method"]]
    print(
        f"fill: {len(cases)} cases, {args.frames} frames, width <= {args.width}, seed {args.seed}, "
        f"{time.perf_counter() - t_start:.0f} s"
    )
    print(format_table(rows))
    if args.json_path:
        write_json_atomic(args.json_path, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
