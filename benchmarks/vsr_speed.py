"""VSR speed and memory: seconds per output frame for 480x270 -> 1920x1080 (x4, tiny) on
this CPU through the engine (vidfx.apply with the node's defaults: chunks of 16 with 4
overlapping, 256-px tiles), peak RSS for a short and a 3x longer clip (memory must not
grow with length), and Real-ESRGAN animevideov3 x4 (ncnn, CPU) on the same frames in the
same run, as a ratio. Each measurement runs in its own process (clean peak RSS).

    .venv/bin/python benchmarks/vsr_speed.py [--frames 12] [--threads 2] [--weights PATH]
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
    import av
    import cv2

    src = SOURCE if SOURCE.exists() else ROOT / "sample_media" / "motion_320x180.mp4"
    frames = []
    with av.open(str(src)) as c:
        for f in c.decode(video=0):
            frames.append(cv2.resize(f.to_ndarray(format="rgb24"), (480, 270), interpolation=cv2.INTER_AREA))
            if len(frames) == n:
                break
    while len(frames) < n:
        frames += frames[: n - len(frames)]
    return frames


def worker(kind: str, n: int, threads: int, weights: str) -> dict:
    import torch

    torch.set_num_threads(threads)
    frames = lr_frames(n)
    if kind == "vsr":
        import vidfx

        params = {"weights": weights} if weights else {}
        vidfx.apply("vsr", frames[:2], tile=0, chunk=2, overlap=0, **params)  # warm-up
        t0 = time.perf_counter()
        out = vidfx.apply("vsr", frames, **params)
        dt = time.perf_counter() - t0
        assert out[0].shape == (3, 1080, 1920), out[0].shape
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
    p.add_argument("--skip-long", action="store_true", help="skip the 3x longer memory run")
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

    ours = run("vsr", a.frames)
    longer = None if a.skip_long else run("vsr", 3 * a.frames)
    esr = run("realesrgan", a.frames)
    try:
        import os
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    print(f"480x270 -> 1920x1080 (x4), {a.threads} threads, load average {load:.1f} at the end")
    print("| method | frames | s/frame | peak RSS (MiB) |")
    print("| --- | --- | --- | --- |")
    for r, name in [(ours, "vsr tiny x4 (engine, chunk 16/4, tile 256)"),
                    (longer, "vsr tiny x4, 3x longer clip"),
                    (esr, "Real-ESRGAN animevideov3 x4 (ncnn CPU)")]:
        if r:
            print(f"| {name} | {r['frames']} | {r['s_per_frame']:.3f} | {r['peak_rss_mib']:.0f} |")
    print(f"ratio vsr / Real-ESRGAN animevideov3: {ours['s_per_frame'] / esr['s_per_frame']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
