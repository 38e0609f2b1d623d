"""Engine overhead per frame: a no-op graph (source -> N passthrough nodes -> null sink).

The source hands out one pre-made frame, so what is timed is the scheduler: cache
lookups, window bookkeeping and calls. Usage: python benchmarks/engine_overhead.py
"""

from __future__ import annotations

import time
from fractions import Fraction

import torch

import vidfx
from vidfx.core.frame import ClipInfo, EndOfStream, Frame
from vidfx.core.node import SourceNode
from vidfx.core.sink import Sink


class SameFrame(SourceNode):
    type_name = "same_frame"

    def __init__(self, count):
        super().__init__(name="src")
        self.count, self.data = count, torch.zeros(3, 1080, 1920)

    def configure(self, inputs, device):
        return ClipInfo(width=1920, height=1080, fps=Fraction(25), num_frames=self.count, time_base=Fraction(1, 25))

    def read(self, n):
        if n >= self.count:
            raise EndOfStream(self.count)
        return Frame(self.data, index=n, pts=n)


class NullSink(Sink):
    def write(self, frame):
        pass


def time_chain(depth: int, node_type: str, frames: int, **params) -> float:
    g = vidfx.Graph()
    prev = g.add(SameFrame(frames))
    for i in range(depth):
        prev = g.add(node_type, prev, name=f"n{i}", **params)
    g.write(prev, sink=NullSink())
    start = time.perf_counter()
    g.run(device="cpu")
    return (time.perf_counter() - start) / frames


def main() -> None:
    frames = 3000
    print(f"{'graph':<42} | {'us/frame':>9} | {'us/frame/node':>13}")
    print("-" * 70)
    base = time_chain(0, "passthrough", frames)
    print(f"{'source -> sink':<42} | {base * 1e6:9.1f} | {'':>13}")
    for depth in (1, 5, 20):
        t = time_chain(depth, "passthrough", frames)
        print(f"{f'source -> {depth} x passthrough -> sink':<42} | {t * 1e6:9.1f} | {(t - base) / depth * 1e6:13.1f}")
    t = time_chain(5, "trim", frames, start=0)
    print(f"{'source -> 5 x trim -> sink':<42} | {t * 1e6:9.1f} | {(t - base) / 5 * 1e6:13.1f}")


if __name__ == "__main__":
    main()
