"""Peak memory while streaming a long 1080p synthetic clip through a temporal node.

Prints RSS after 1, 5 and 10 minutes of video (and the peak); memory must be flat in
video length. Usage:  python benchmarks/engine_memory.py [--minutes 10] [--radius 2] [--encode out.mkv]
"""

from __future__ import annotations

import argparse
import time

import psutil

import vidfx
from vidfx.core.sink import Sink


class RssSink(Sink):
    """Discards frames (or forwards them to a file sink) and samples RSS at checkpoints."""

    def __init__(self, checkpoints: dict[int, str], inner: Sink | None = None):
        self.checkpoints, self.inner = checkpoints, inner
        self.proc = psutil.Process()
        self.rows, self.peak, self.count = [], 0, 0

    def open(self, info):
        if self.inner:
            self.inner.open(info)

    def write(self, frame):
        _ = frame.data  # make sure the pixels were really produced
        if self.inner:
            self.inner.write(frame)
        self.count += 1
        rss = self.proc.memory_info().rss
        self.peak = max(self.peak, rss)
        if self.count in self.checkpoints:
            row = (self.checkpoints[self.count], self.count, rss, self.peak)
            self.rows.append(row)
            print(f"{row[0]:>10} | {row[1]:>6} | {row[2] / 2**20:8.0f} | {row[3] / 2**20:8.0f}", flush=True)

    def close(self):
        if self.inner:
            self.inner.close()

    def abort(self):
        if self.inner:
            self.inner.abort()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--radius", type=int, default=2)
    parser.add_argument("--encode", help="also encode to this file (e.g. out.mkv with ffv1)")
    args = parser.parse_args()
    fps = 24000 / 1001
    total = int(args.minutes * 60 * fps)
    marks = {int(m * 60 * fps): f"{m:g} min" for m in (0.1, 1, 2, 5, 10) if m <= args.minutes}
    marks[total] = marks.get(total, f"{args.minutes:g} min")
    g = vidfx.Graph()
    src = g.add("pattern", width=1920, height=1080, fps="24000/1001", frames=total)
    avg = g.add("temporal_average", src, radius=args.radius)
    inner = None
    if args.encode:
        from vidfx.io import make_sink

        inner = make_sink(args.encode)
    sink = RssSink(marks, inner)
    g.write(avg, sink=sink)
    print(
        f"1080p pattern -> temporal_average(radius={args.radius}) -> "
        f"{'encode ' + args.encode if args.encode else 'null'}, {total} frames"
    )
    print(f"{'video time':>10} | {'frames':>6} | {'RSS MiB':>8} | {'peak MiB':>8}")
    print("-" * 42, flush=True)
    start = time.monotonic()
    g.run(device="cpu")
    seconds = time.monotonic() - start
    print(f"{total} frames in {seconds:.0f} s ({total / seconds:.1f} fps)")


if __name__ == "__main__":
    main()
