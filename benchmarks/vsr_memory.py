"""VSR memory over clip length: 480x270 -> 1920x1080 (x4, shipped tiny weights) through the
engine with the node's defaults (chunks of 12 with 4 overlapping, tiles of 320 LR px), frames
dropped by the sink; prints the current and peak RSS every 20 output frames. Flat = memory
does not grow with the clip's length.

    .venv/bin/python benchmarks/vsr_memory.py [--frames 160] [--threads 1]
"""

from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path

import numpy as np
import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import vidfx  # noqa: E402
from vidfx.core.sink import Sink  # noqa: E402


class RSSSink(Sink):
    """Drops frames; prints RSS every ``every`` frames."""

    def __init__(self, every: int = 20):
        self.n, self.every, self.proc = 0, every, psutil.Process()

    def write(self, frame) -> None:
        assert frame.data.shape == (3, 1080, 1920)
        self.n += 1
        if self.n % self.every == 0:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"| {self.n} | {self.proc.memory_info().rss / 2**20:.0f} | {peak:.0f} |", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=160)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    pictures = [(rng.random((270, 480, 3)) * 255).astype(np.uint8) for _ in range(8)]
    frames = [pictures[i % 8] for i in range(a.frames)]
    print("| output frames | RSS (MiB) | peak RSS so far (MiB) |")
    print("| --- | --- | --- |")
    vidfx.apply("vsr", frames, sink=RSSSink())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
