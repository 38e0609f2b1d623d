"""VSR speed and memory: seconds per output frame for 480x270 -> 1920x1080 (x4, tiny) on
this CPU through the engine (vidfx.apply with the node's defaults: chunks of 12 with 4
overlapping, tiles of at most 320 LR px), timed on a clip of 3 x --frames frames; peak RSS
for that clip and for one a third as long (memory must not grow with length; frames go to a
sink that drops them), and Real-ESRGAN animevideov3 x4 (ncnn, CPU) on the same frames in the
same run, as a ratio. Each measurement runs in its own process (clean peak RSS).

    .venv/bin/python benchmarks/vsr_speed.py [--frames 12]   # runs 36 and 12 frames [--threads 2] [--weights PATH]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SOURCE = Path("/work/shared/data/clips/paragliding-launch.mp4")


def lr_frames(n: int) -> list[np.ndarray]:
    """n real 480x270 frames (a clip from shared data, or sample media, looped if short)."""
    import cv2

    from vidfx.io.frames import rgb_frames

    src = SOURCE if SOURCE.exists() else ROOT / "sample_media" / "motion_320x180.mp4"
    frames = [cv2.resize(f, (480, 270), interpolation=cv2.INTER_AREA) for f in rgb_frames(src, n)]
    while len(frames) < n:
        frames += frames[: n - len(frames)]
    return frames


def worker(kind: str, n: int, threads: int, weights: str) -> dict:
    import torch

    torch.set_num_threads(threads)
    frames = lr_frames(n)
    if kind == "vsr":
        import vidfx
        from vidfx.api import ArraySource
        from vidfx.core.engine import build_runs, pull
        from vidfx.core.graph import Graph
        from vidfx.core.registry import create_node
        from vidfx.core.sink import Sink

        class CountSink(Sink):
            """Checks and drops frames (memory must not depend on what a sink keeps)."""

            count = 0

            def write(self, frame):
                assert frame.data.shape == (3, 1080, 1920), frame.data.shape
                self.count += 1

        params = {"weights": weights} if weights else {}
        vidfx.apply("vsr", frames[:2], tile=0, chunk=2, overlap=0, **params)  # warm-up
        graph = Graph()
        src = graph.add(ArraySource(frames))
        node = graph.add(create_node("vsr", **params), src)
        sink = CountSink()
        graph.write(node, sink=sink)
        t0 = time.perf_counter()
        runs = build_runs(graph.order(), torch.device("cpu"))
        pull([("frames", runs[node], sink)])
        dt = time.perf_counter() - t0
        assert sink.count == n
    else:
        from vidfx.api import to_tensor
        from vidfx.vsr.realesrgan import RealESRGAN

        net = RealESRGAN("realesr-animevideov3-x4", threads=threads)
        net(to_tensor(frames[0]))
        t0 = time.perf_counter()
        for f in frames:
            out = net(to_tensor(f))
        dt = time.perf_counter() - t0
        assert out.shape == (3, 1080, 1920)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"kind": kind, "frames": n, "s_per_frame": dt / n, "peak_rss_mib": rss}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--weights", default="")
    p.add_argument("--worker", default="")
    p.add_argument("--skip-long", action="store_true", help="skip the short-clip memory run")
    a = p.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker, a.frames, a.threads, a.weights)))
        return 0

    def run(kind: str, n: int) -> dict:
        cmd = [sys.executable, __file__, "--worker", kind, "--frames", str(n), "--threads", str(a.threads)]
        if a.weights:
            cmd += ["--weights", a.weights]
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if res.returncode:
            raise SystemExit(res.stderr)
        return json.loads(res.stdout.strip().splitlines()[-1])

    longer = run("vsr", 3 * a.frames)  # timed on the long clip: chunk overheads as in real use
    ours = None if a.skip_long else run("vsr", a.frames)
    esr = run("realesrgan", a.frames)
    try:
        import os

        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    print(f"480x270 -> 1920x1080 (x4), {a.threads} threads, load average {load:.1f} at the end")
    print("| method | frames | s/frame | peak RSS (MiB) |")
    print("| --- | --- | --- | --- |")
    for r, name in [
        (ours, "vsr tiny x4 (engine, chunk 12/4, tile 320), short clip"),
        (longer, "vsr tiny x4 (engine, chunk 12/4, tile 320), 3x longer clip"),
        (esr, "Real-ESRGAN animevideov3 x4 (ncnn CPU)"),
    ]:
        if r:
            print(f"| {name} | {r['frames']} | {r['s_per_frame']:.3f} | {r['peak_rss_mib']:.0f} |")
    print(f"ratio vsr / Real-ESRGAN animevideov3 (s/frame): {longer['s_per_frame'] / esr['s_per_frame']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
