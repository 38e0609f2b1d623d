"""Console use: the first ``vidfx.apply`` call of a node loads its weights, later calls reuse them.

Prints, per node, the time of the first call in this process, of the next calls, and of a call
after ``vidfx.ops.weights.clear_cache()`` (what every call cost before the cache: the weights
read and the model built again); repeated calls report the best of ``--repeats`` (the machine
may be shared). A second table times the weights alone: reading and building each shipped
model (``build_model``) against a cache hit (``load_model``).

    .venv/bin/python benchmarks/api_model_reuse.py [--threads 1] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import av
import numpy as np
import torch

import vidfx
from vidfx.jumpcut.model import FAMILY as JUMPCUT
from vidfx.jumpcut.model import build_synthnet
from vidfx.jumpcut.synthesize import DEFAULT_WEIGHTS as JUMPCUT_WEIGHTS
from vidfx.ops.weights import build_model, clear_cache, load_model
from vidfx.segment.model import DEFAULT_WEIGHTS as SEGMENT_WEIGHTS
from vidfx.segment.model import FAMILY as SEGMENT
from vidfx.segment.model import build_segnet
from vidfx.vsr.node import FAMILY as VSR
from vidfx.vsr.node import build_vsr_channels_last, shipped_weights

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_media" / "motion_320x180.mp4"
TALKING = ROOT.parent / "shared" / "data" / "talking" / "3.mp4"


def read_frames(path: Path, count: int) -> list[np.ndarray]:
    """The first ``count`` frames of a video, RGB uint8 (H, W, 3)."""
    frames = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            frames.append(f.to_ndarray(format="rgb24"))
            if len(frames) == count:
                break
    return frames


def timed(call, *args) -> float:
    """Seconds taken by ``call(*args)``."""
    t0 = time.perf_counter()
    call(*args)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5, help="warm and uncached calls per node (best of)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    frame = read_frames(SAMPLE, 1)[0]
    small = np.ascontiguousarray(frame[::4, ::4])  # 80x45: one small frame, as from a console
    cases = [
        ("vsr x4, one 80x45 frame", lambda: vidfx.apply("vsr", [small], scale=4)),
        ("segment, one 320x180 frame", lambda: vidfx.apply("segment", [frame])),
    ]
    if TALKING.exists():
        talk = [np.ascontiguousarray(f[::2, ::2]) for f in read_frames(TALKING, 16)]
        cases.append(
            (
                "jumpcut ours, 16 frames 256x256, 1 cut",
                lambda: vidfx.apply("jumpcut", talk, cuts=["8"], frames=2, context=4, adapt_steps=0),
            )
        )

    print(f"threads {args.threads}, best of {args.repeats}; times in seconds")
    print(f"| {'vidfx.apply call':40s} | first in process | next (cached model) | uncached (weights reloaded) |")
    print(f"| {'-' * 40} | ---------------: | ------------------: | --------------------------: |")
    for name, call in cases:
        clear_cache()
        first = timed(call)
        warm = min(timed(call) for _ in range(args.repeats))
        cold = []
        for _ in range(args.repeats):
            clear_cache()
            cold.append(timed(call))
        print(f"| {name:40s} | {first:16.3f} | {warm:19.3f} | {min(cold):27.3f} |")

    print()
    print(f"| {'weights file':40s} | read + build (ms) | cache hit (ms) |")
    print(f"| {'-' * 40} | ----------------: | -------------: |")
    files = [
        (shipped_weights("tiny_x4"), VSR, build_vsr_channels_last),
        (SEGMENT_WEIGHTS, SEGMENT, build_segnet),
        (Path(JUMPCUT_WEIGHTS), JUMPCUT, build_synthnet),
    ]
    for path, family, build in files:
        cold = min(timed(build_model, path, family, build) for _ in range(args.repeats))
        clear_cache()
        load_model(path, family, build)
        hit = min(timed(load_model, path, family, build) for _ in range(args.repeats))
        print(f"| {family + ': ' + path.name:40s} | {cold * 1e3:17.1f} | {hit * 1e3:14.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
