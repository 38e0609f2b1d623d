"""``vidfx eval translate [--methods ...] [--json FILE] [--threads N] [--data DIR] [--frames N]``:
day -> dusk translation, scored for realism, content, flicker and speed.

Protocol. Data (see :mod:`vidfx.translate.data`): the daylight input is CamVid **val** (101
frames of 0016E5, 480x360, with labels); the real-dusk reference is the 0001TP sequence of
CamVid **test** (62 frames), the only dusk footage outside the training frames. CamVid test is
evaluation-only: it is read here and nowhere in training or model selection (which use CamVid
train, split by :func:`~vidfx.translate.data.domain_files`). Methods (rows) are runners
``(frames, consecutive) -> frames``: the val frames go in as independent stills
(``consecutive=False``: each frame translated alone), the flicker clip as a video
(``consecutive=True``: temporal smoothing allowed). Built in: ``identity`` (the input
unchanged) and ``reinhard`` (:mod:`vidfx.translate.reinhard` towards the dusk training frames'
Lab statistics: each still with its own statistics, a clip with the clip's pooled ones); ``ours``
and ``scratch`` (the from-scratch ablation) come from ``vidfx.translate.pipeline`` when it and its
weights are there. Metrics:

- ``fd``: Fréchet distance between the translated val frames and the real-dusk reference in
  the feature space of :mod:`vidfx.ops.features` (the CamVid segmentation network's pooled
  encoder levels 1-3, D = 96). Each frame gives ``TILE_ROWS`` x ``TILE_COLS`` = 3 x 5 = 15
  tiles of ``TILE`` = 96 x 96 pixels on a regular grid (tile corners evenly spaced from the top
  and left edges to the bottom and right ones: at 480x360 the columns touch, the rows overlap
  by 30 px), so the day set has 101 x 15 = 1515 samples and the reference 62 x 15 = 930. Lower
  is closer to real dusk.
- ``miou``: mean IoU in percent (11 classes, void = 11 ignored) of the shipped CamVid ``segment``
  network on each translated val frame (through 8 bits, as a written frame would be) against
  that frame's own label, by the path of ``vidfx eval segment`` (:func:`vidfx.segment.evaluate.run`,
  the weights' processing scale, no smoothing). The labels are the day frames' own, so this
  measures how much scene content survives the translation; ``identity`` gives the untranslated
  frames' mIoU.
- ``warp_error``: flicker, x 100 (percent of the 0..1 range), on a daylight development clip:
  the first ``--frames`` (default 24) frames of ``scenes/udacity_solidWhiteRight.mp4``
  (motorway drive) downscaled (area) to 480 wide, translated as one clip; the output's frame
  t+1 is warped back to t along the *source* clip's DIS "medium" flow and compared over the
  whole frame where that flow is forward-backward consistent
  (:func:`vidfx.ops.temporal.warp_error`). ``identity`` gives the source's own residual.
- ``seconds_per_frame``: wall time of the runner on the 480x360 val stills divided by their
  number, after one untimed warm-up frame (model loading), with ``--threads`` torch threads
  (default 2; the metrics run with the same setting, the features of ``fd`` with one thread).

A metric that cannot be computed is None (JSON ``null``). ``--json FILE`` writes the rows
atomically: ``[{"method", "fd", "miou", "warp_error", "seconds_per_frame"}, ...]``.
``--val-frames`` and ``--reference-frames`` use evenly spaced subsets (for quick checks; the
reported protocol uses all frames).
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np
import torch

from ..core.errors import MediaError
from ..fill.evaluate import load_clip, torch_threads, write_json_atomic
from ..ops.features import frechet_distance, patch_features
from ..ops.temporal import truth_flows, warp_error
from .data import DATA, DUSK_SEQUENCE, domain_files, eval_day_files, read_frames, read_rgb, reference_dusk_files
from .reinhard import LabStats, reinhard_transfer

METHODS = ("identity", "reinhard", "ours", "scratch")
BUILTIN_METHODS = ("identity", "reinhard")
MODEL_WEIGHTS = {"ours": "PRETRAINED_WEIGHTS", "scratch": "SCRATCH_WEIGHTS"}  # constants of vidfx.translate.pipeline
COLUMNS = ("method", "fd", "miou", "warp_error", "seconds_per_frame")
CLIP = Path("scenes") / "udacity_solidWhiteRight.mp4"  # daylight development clip, under the data folder
CLIP_FRAMES = 24
CLIP_WIDTH = 480
TILE = 96  # side of the FD tiles (a multiple of the feature network's stride, 32)
TILE_ROWS, TILE_COLS = 3, 5
FEATURE_FRAMES = 8  # frames whose tiles go through the feature network at once

# (frames float32 (T, H, W, 3) 0..1, consecutive) -> float32 (T, H, W, 3) 0..1; consecutive=False: independent
# stills (each frame translated alone), True: one clip (temporal smoothing allowed).
Runner = Callable[[np.ndarray, bool], np.ndarray]
T = TypeVar("T")


# ---------------------------------------------------------------- methods


def run_identity(frames: np.ndarray, consecutive: bool) -> np.ndarray:
    """The frames unchanged (the untranslated baseline).

    Shape:
        - frames: float32 :math:`(T, H, W, 3)`, 0..1
        - output: float32 :math:`(T, H, W, 3)`
    """
    return np.asarray(frames, np.float32)


class ReinhardRunner:
    """Reinhard colour transfer towards ``target`` (the dusk training frames' Lab statistics):
    stills each with their own statistics, a clip (``consecutive``) with the statistics pooled
    over all its frames, so that every frame gets the same mapping."""

    def __init__(self, target: LabStats):
        self.target = target

    @classmethod
    def from_data(cls, data: Path = DATA) -> ReinhardRunner:
        """The runner with the target statistics of the dusk ``train`` frames under ``data``."""
        return cls(LabStats.of([read_rgb(p) for p in domain_files(data, "dusk", "train")]))

    def __call__(self, frames: np.ndarray, consecutive: bool) -> np.ndarray:
        """Translate ``frames`` (a clip when ``consecutive``, else independent stills).

        Shape:
            - frames: float32 :math:`(T, H, W, 3)`, 0..1
            - output: float32 :math:`(T, H, W, 3)`, 0..1
        """
        source = LabStats.of(frames) if consecutive and len(frames) else None
        out = np.empty_like(np.asarray(frames, np.float32))
        for t, frame in enumerate(frames):
            out[t] = reinhard_transfer(frame, source, self.target)
        return out


def _pipeline() -> Any:
    return importlib.import_module(f"{__package__}.pipeline")


def model_weights(method: str) -> Path:
    """The weights file of a model method (``ours``: ``pipeline.PRETRAINED_WEIGHTS``, ``scratch``:
    ``pipeline.SCRATCH_WEIGHTS``). A one-line ``ValueError`` when ``vidfx.translate.pipeline``
    cannot be imported, lacks the constant, or the file does not exist."""
    if method not in MODEL_WEIGHTS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    try:
        pipeline = _pipeline()
    except ImportError as exc:
        raise ValueError(f"method {method!r} is not available: vidfx.translate.pipeline ({exc})") from None
    weights = getattr(pipeline, MODEL_WEIGHTS[method], None)
    if weights is None:
        raise ValueError(f"method {method!r} is not available: vidfx.translate.pipeline has no {MODEL_WEIGHTS[method]}")
    if not Path(weights).is_file():
        raise ValueError(f"method {method!r} is not available: weights file {weights} not found")
    return Path(weights)


class PipelineRunner:
    """A model method: ``TranslatePipeline(TranslateSettings(weights=...))`` of
    ``vidfx.translate.pipeline`` (imported on first use). A clip goes through one pipeline; each
    still through a fresh one (no state carried from frame to frame)."""

    def __init__(self, weights: Path):
        self.weights = weights

    def _new(self) -> Any:
        pipeline = _pipeline()
        return pipeline.TranslatePipeline(pipeline.TranslateSettings(weights=str(self.weights)))

    def __call__(self, frames: np.ndarray, consecutive: bool) -> np.ndarray:
        """Translate ``frames`` (a clip when ``consecutive``, else independent stills).

        Shape:
            - frames: float32 :math:`(T, H, W, 3)`, 0..1
            - output: float32 :math:`(T, H, W, 3)`, 0..1
        """
        if consecutive:
            return np.asarray(self._new().run(frames), np.float32)
        out = [np.asarray(self._new().run(frames[i : i + 1]), np.float32) for i in range(len(frames))]
        return np.concatenate(out) if out else np.asarray(frames, np.float32)


def available_methods() -> list[str]:
    """The default methods: the built-in ones, then each model method whose pipeline and weights exist."""
    out = list(BUILTIN_METHODS)
    for m in MODEL_WEIGHTS:
        try:
            model_weights(m)
        except ValueError:
            continue
        out.append(m)
    return out


def make_runners(methods: Sequence[str], data: Path = DATA) -> dict[str, Runner]:
    """The runner of each of ``methods``. A one-line ``ValueError`` for an unknown method or a
    model method that is not available (:func:`model_weights`); ``reinhard`` reads the dusk
    training frames under ``data`` (``FileNotFoundError`` when they are missing)."""
    runners: dict[str, Runner] = {}
    for m in methods:
        if m == "identity":
            runners[m] = run_identity
        elif m == "reinhard":
            runners[m] = ReinhardRunner.from_data(data)
        elif m in MODEL_WEIGHTS:
            runners[m] = PipelineRunner(model_weights(m))
        else:
            raise ValueError(f"unknown method {m!r}; valid: {', '.join(METHODS)}")
    return runners


# ---------------------------------------------------------------- metrics


def tile_boxes(h: int, w: int, size: int = TILE, rows: int = TILE_ROWS, cols: int = TILE_COLS) -> list[tuple[int, int]]:
    """Top-left corners (y, x) of the FD tiles of an h x w frame: ``rows`` x ``cols`` tiles of
    ``size`` x ``size``, corners evenly spaced (rounded) from the top-left edge to the
    bottom-right one, row by row. A frame smaller than a tile is a ``ValueError``."""
    if h < size or w < size:
        raise ValueError(f"a {w}x{h} frame is smaller than the {size}x{size} FD tiles")
    ys = [round(i * (h - size) / (rows - 1)) if rows > 1 else (h - size) // 2 for i in range(rows)]
    xs = [round(j * (w - size) / (cols - 1)) if cols > 1 else (w - size) // 2 for j in range(cols)]
    return [(y, x) for y in ys for x in xs]


def tile_features(frames: np.ndarray) -> np.ndarray:
    """Features (:func:`vidfx.ops.features.patch_features`) of the :func:`tile_boxes` tiles of
    every frame, frame by frame in tile order.

    Shape:
        - frames: float32 :math:`(N, H, W, 3)`, 0..1
        - output: float64 :math:`(15 N, D)` (15 = ``TILE_ROWS`` x ``TILE_COLS``), D = 96
    """
    boxes = tile_boxes(*frames.shape[1:3])
    out = []
    for start in range(0, len(frames), FEATURE_FRAMES):
        chunk = frames[start : start + FEATURE_FRAMES]
        tiles = np.stack([f[y : y + TILE, x : x + TILE] for f in chunk for y, x in boxes])
        out.append(patch_features(torch.from_numpy(np.ascontiguousarray(tiles, np.float32)).permute(0, 3, 1, 2)))
    return np.concatenate(out) if out else patch_features(torch.zeros(0, 3, TILE, TILE))


def to_u8(frames: np.ndarray) -> np.ndarray:
    """Float frames 0..1 to 8 bits (rounded, clipped), as a written frame would be.

    Shape:
        - frames: float :math:`(..., 3)`; output: uint8, same shape
    """
    return np.clip(np.asarray(frames, np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def segment_miou(frames: np.ndarray, labels: Sequence[np.ndarray]) -> float:
    """mIoU in percent of the shipped CamVid network on ``frames`` (through 8 bits) against
    ``labels``, by the path of ``vidfx eval segment`` (its ``run``, the weights' scale, no smoothing).

    Shape:
        - frames: float32 :math:`(N, H, W, 3)`, 0..1
        - labels: N arrays uint8 :math:`(H, W)`, classes 0..10, 11 = void
    """
    from ..segment.evaluate import run as segment_run
    from ..segment.model import load_model_shared, weights_scale

    model = load_model_shared(device="cpu")
    images = list(to_u8(frames))
    names = [f"frame_{i:05d}" for i in range(len(images))]
    result = segment_run(model, images, list(labels), names, weights_scale(model), 0.0, torch.device("cpu"))
    return float(result["miou"])


def read_label(path: Path) -> np.ndarray:
    """A CamVid label file as uint8 :math:`(H, W)` (classes 0..10, 11 = void)."""
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        raise FileNotFoundError(f"cannot read CamVid label {path}")
    return np.asarray(label, np.uint8)


# ---------------------------------------------------------------- evaluation


def spaced(items: Sequence[T], count: int | None) -> list[T]:
    """``count`` evenly spaced items (first and last included); all of them for None or a count
    at least their number."""
    if count is None or count >= len(items):
        return list(items)
    if count <= 0:
        return []
    if count == 1:
        return [items[0]]
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)]


def _finite(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _translate(runner: Runner, frames: np.ndarray, consecutive: bool, method: str) -> tuple[np.ndarray, float]:
    """The runner's output (clipped to 0..1) and the seconds the runner took."""
    given = frames.copy()
    t0 = time.perf_counter()
    out = runner(given, consecutive)
    seconds = time.perf_counter() - t0
    out = np.asarray(out, np.float32)
    if out.shape != frames.shape:
        raise ValueError(f"method {method!r} returned shape {out.shape} for input {frames.shape}")
    return np.clip(out, 0.0, 1.0), seconds


def evaluate(
    methods: Sequence[str],
    runners: Mapping[str, Runner],
    data: Path = DATA,
    *,
    val_frames: int | None = None,
    reference_frames: int | None = None,
    clip_frames: int = CLIP_FRAMES,
    threads: int = 2,
    log: Callable[[str], None] | None = None,
) -> list[dict]:
    """Run ``methods`` (each a key of ``runners``) and score them (see the module docstring).

    ``val_frames`` / ``reference_frames`` limit the CamVid val input / the dusk reference to that
    many evenly spaced frames (None: all); ``clip_frames`` is the length of the flicker clip;
    ``threads`` the torch threads while the runners and the metrics run.

    Returns one row per method: ``{"method", "fd", "miou", "warp_error", "seconds_per_frame"}``
    (None where a metric cannot be computed). An unknown method is a ``ValueError``; missing data
    a ``FileNotFoundError`` or ``MediaError``.
    """
    log = log or (lambda s: None)
    for m in methods:
        if m not in runners:
            raise ValueError(f"unknown method {m!r}; valid: {', '.join(runners)}")
    data = Path(data)
    pairs = spaced(eval_day_files(data), val_frames)
    day = read_frames([p for p, _ in pairs])
    labels = [read_label(lab) for _, lab in pairs]
    reference = read_frames(spaced(reference_dusk_files(data), reference_frames))
    clip = load_clip(data / CLIP, clip_frames, CLIP_WIDTH)
    rows: list[dict] = []
    with torch_threads(threads):
        ref_features = tile_features(reference)
        flows = truth_flows(clip)
        whole = np.ones(clip.shape[:3], bool)
        log(f"{len(day)} val frames, {len(reference)} reference frames, clip {clip.shape[0]} frames")
        for m in methods:
            runner = runners[m]
            if len(day):
                _translate(runner, day[:1], False, m)  # warm-up: weights, caches
            out, seconds = _translate(runner, day, False, m)
            fd = frechet_distance(tile_features(out), ref_features) if len(day) and len(reference) else None
            miou = segment_miou(out, labels) if len(day) else None
            we = warp_error(_translate(runner, clip, True, m)[0], clip, whole, flows)
            row: dict[str, Any] = {
                "method": m,
                "fd": _finite(fd),
                "miou": _finite(miou),
                "warp_error": _finite(we),
                "seconds_per_frame": seconds / len(day) if len(day) else None,
            }
            rows.append(row)
            log(f"{m:<10} " + "  ".join(f"{k} {_fmt(row[k], '.4f')}" for k in COLUMNS[1:]))
    return rows


def _fmt(v: float | None, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def format_table(rows: Sequence[dict]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| method | FD to real dusk | mIoU % (segment) | warp err x100 | s / frame |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {_fmt(r['fd'], '.3f')} | {_fmt(r['miou'], '.2f')} | "
            f"{_fmt(r['warp_error'], '.3f')} | {_fmt(r['seconds_per_frame'], '.4f')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``vidfx eval translate``; returns an exit code."""
    doc = __doc__ or ""
    p = argparse.ArgumentParser(prog="vidfx eval translate", description=doc.split("\n")[1])
    p.add_argument(
        "--methods", nargs="+", default=None, help=f"subset of {' '.join(METHODS)} (default: those available)"
    )
    p.add_argument(
        "--json", dest="json_path", default=None, metavar="FILE", help="also write the rows as JSON here (atomically)"
    )
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--data", default=str(DATA), help="data folder (camvid/, scenes/)")
    p.add_argument("--frames", type=int, default=CLIP_FRAMES, help="frames of the flicker clip (default 24)")
    p.add_argument("--val-frames", type=int, default=None, help="only this many CamVid val frames (evenly spaced)")
    p.add_argument(
        "--reference-frames", type=int, default=None, help="only this many dusk reference frames (evenly spaced)"
    )
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.frames < 2 or args.threads < 1:
        print("error: --frames must be >= 2 and --threads >= 1", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    data = Path(args.data)
    methods = list(args.methods) if args.methods else available_methods()
    t_start = time.perf_counter()
    try:
        runners = make_runners(methods, data)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    try:
        rows = evaluate(
            methods,
            runners,
            data,
            val_frames=args.val_frames,
            reference_frames=args.reference_frames,
            clip_frames=args.frames,
            threads=args.threads,
            log=lambda s: print(s, file=sys.stderr, flush=True),
        )
    except (MediaError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    print(
        f"translate: CamVid val -> dusk, reference CamVid test {DUSK_SEQUENCE}, clip {CLIP.name} "
        f"{args.frames} frames at {CLIP_WIDTH} wide, {args.threads} threads, {time.perf_counter() - t_start:.0f} s"
    )
    print(format_table(rows))
    if args.json_path:
        write_json_atomic(args.json_path, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
