"""Start-up time and peak memory of light commands: `vidfx --help`, `vidfx nodes` (with its
schema cache filled), `vidfx probe FILE`, and for scale `python -c "import torch"`.

Usage: python benchmarks/cli_startup.py [--repeat 5]
Prints a table (median wall seconds and peak RSS of the child process over the repeats).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SAMPLE = Path(__file__).resolve().parent.parent / "sample_media" / "motion_320x180.mp4"
VIDFX = [sys.executable, "-m", "vidfx.cli"]


def measure(cmd: list[str], repeat: int) -> tuple[float, float]:
    """(median seconds, max peak RSS in MiB) of running ``cmd`` ``repeat`` times."""
    times, peaks = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        times.append(time.perf_counter() - start)
        if status != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({status})")
        peaks.append(usage.ru_maxrss / 1024)  # KiB on Linux
    return statistics.median(times), max(peaks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    subprocess.run(VIDFX + ["nodes"], stdout=subprocess.DEVNULL, check=True)  # fill the schema cache
    rows = [
        ("vidfx --help", VIDFX + ["--help"]),
        ("vidfx --version", VIDFX + ["--version"]),
        ("vidfx nodes (cached schemas)", VIDFX + ["nodes"]),
        ("vidfx probe sample_media/motion_320x180.mp4", VIDFX + ["probe", str(SAMPLE)]),
        ('python -c "import torch" (for scale)', [sys.executable, "-c", "import torch"]),
    ]
    print(f"{args.repeat} runs each, load average {os.getloadavg()[0]:.1f}; target <= 0.5 s and <= 150 MiB")
    print("| command | median s | peak RSS MiB |")
    print("| --- | ---: | ---: |")
    for label, cmd in rows:
        seconds, rss = measure(cmd, args.repeat)
        print(f"| {label} | {seconds:.2f} | {rss:.0f} |")


if __name__ == "__main__":
    main()
