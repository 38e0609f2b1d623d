"""The Ray backend: throughput of ``segment`` locally and on 1 and 2 Ray workers, and the
halo overhead of ``vsr`` at several segment lengths (from the planner alone).

Usage: python benchmarks/ray_scaling.py [--frames 192] [--size 320x180] [--skip-runs]

Every run uses one torch thread per process (the local engine too). Ray times include
starting Ray and the worker processes (what ``vidfx run --backend ray`` costs on one
machine). The Ray outputs are compared frame by frame with the local one.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import av
import torch

from vidfx.core.graph import Graph
from vidfx.scale.backend import run_on_ray
from vidfx.scale.plan import halo_overhead, plan_segments, single_run_counts
from vidfx.vsr.node import VSRNode


def segment_graph(out: str, frames: int, width: int, height: int, smoothing: float) -> Graph:
    g = Graph()
    src = g.add("pattern", width=width, height=height, frames=frames, fps="25")
    g.write(g.add("segment", src, smoothing=smoothing), out, codec="ffv1")
    return g


def frames_of(path: str) -> list[bytes]:
    with av.open(path) as c:
        return [f.to_ndarray(format="rgb48le").tobytes() for f in c.decode(video=0)]


def throughput(frames: int, width: int, height: int, smoothing: float) -> None:
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "local.mkv")
        started = time.monotonic()
        segment_graph(local, frames, width, height, smoothing).run(device="cpu")
        seconds = time.monotonic() - started
        rows.append(("local engine", seconds, frames / seconds, "-"))
        reference = frames_of(local)
        # 1 worker with 4 and with 16 segments: the difference is the fixed cost of 12 segments
        for workers, segments in ((1, 4), (2, 4), (1, 16)):
            out = os.path.join(tmp, f"ray{workers}_{segments}.mkv")
            started = time.monotonic()
            graph = segment_graph(out, frames, width, height, smoothing)
            run_on_ray(graph, workers=workers, segment_frames=frames // segments)
            seconds = time.monotonic() - started
            differ = sum(a != b for a, b in zip(frames_of(out), reference, strict=True))
            rows.append((f"ray, {workers} worker(s), {segments} segments", seconds, frames / seconds, str(differ)))
    print(f"\nsegment (smoothing {smoothing}), {frames} frames of {width}x{height}, one torch thread per process")
    print("| run | seconds | fps | frames differing from local |")
    print("| --- | ---: | ---: | ---: |")
    for name, seconds, fps, differ in rows:
        print(f"| {name} | {seconds:.1f} | {fps:.2f} | {differ} |")
    print(f"fixed cost per segment (1 worker, 16 vs 4 segments): {(rows[3][1] - rows[1][1]) / 12:.2f} s")


def vsr_overhead(length: int) -> None:
    """Extra frames decoded and processed per kept frame, for vsr's default chunk layout."""
    g = Graph()
    src = g.add("pattern", width=480, height=270, frames=length)
    node = VSRNode()  # not configured: the planner needs only its chunk layout
    g.write(g.add(node, src, name="vsr"), "unused.mkv")
    order = g.order()
    lengths = {src: length, "vsr": length}
    single = single_run_counts(order, lengths, "vsr")
    film = 90 * 60 * 24
    started = time.monotonic()
    plan_segments(order, {src: film, "vsr": film}, "vsr", 500)
    seconds = time.monotonic() - started
    print(f"planning a 90-minute film at 24 fps ({film} frames, 500-frame segments): {seconds:.1f} s")
    print(f"\nvsr halo overhead (chunk {node.chunk_length}, overlap {node.chunk_overlap}), {length}-frame clip")
    print(
        "| segment frames | segments | extra frames decoded / kept | extra chunk frames processed / single run "
        "| frames a reader without forward seeking decodes / kept |"
    )
    print("| ---: | ---: | ---: | ---: | ---: |")
    for seg in (100, 250, 500, 1000, 2000):
        plan = plan_segments(order, lengths, "vsr", seg)
        extra = halo_overhead(plan, single)
        # today's VideoDecoder decodes from frame 0 up to the halo's end for every segment
        sequential = sum(s.halo[src][1] for s in plan.segments) / length
        print(f"| {seg} | {len(plan.segments)} | {extra[src]:.2%} | {extra['vsr']:.2%} | {sequential:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=192)
    parser.add_argument("--size", default="320x180")
    parser.add_argument("--length", type=int, default=7200, help="clip length for the halo overhead")
    parser.add_argument(
        "--smoothing", type=float, default=0.0, help="segment's temporal smoothing (above 0 it is rendered whole)"
    )
    parser.add_argument("--skip-runs", action="store_true", help="only the planner's halo overhead")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    vsr_overhead(args.length)
    if not args.skip_runs:
        width, height = (int(v) for v in args.size.split("x"))
        throughput(args.frames, width, height, args.smoothing)
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
