"""Per-frame cost of the OFX bridge (plugin -> server -> plugin) against running the node
in-process, at 1080p and 4K float RGBA, and as a share of the vsr node's own time.

It builds the plugin, loads it in the ctypes test host (tests/ofx_host.py), starts a
private render server, and times the Render action alone (the host's own work, such as
flipping its input frames, is cached out). Run:

    .venv/bin/python benchmarks/ofx_overhead.py [--repeat 5] [--sizes 1920x1080,3840x2160]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from ofx_host import OK, OfxHost  # noqa: E402
from vidfx.ofx_bridge import build as ofx_build  # noqa: E402

import vidfx  # noqa: E402
from vidfx.core.frame import ClipInfo, Frame  # noqa: E402
from vidfx.core.registry import create_node, node_types  # noqa: E402
from vidfx.server import protocol  # noqa: E402

FILTER = "OfxImageEffectContextFilter"


def parse_size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def make_frames(w: int, h: int, count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    base = rng.random((h, w, 4), dtype=np.float32)
    return [np.roll(base, 3 * i, axis=1) for i in range(count)]


def in_process_ms(type_name: str, frames: list[np.ndarray], repeat: int, **params) -> float:
    """Median time of node.render for frames 1..repeat, called directly with its window."""
    node = create_node(type_name, **params)
    h, w = frames[0].shape[:2]
    info = ClipInfo(width=w, height=h, fps=25, num_frames=len(frames), channels=3, bit_depth=32)
    node.configure([info], torch.device("cpu"))
    data = [
        Frame(torch.from_numpy(f[..., :3]).permute(2, 0, 1).contiguous(), index=i, pts=i) for i, f in enumerate(frames)
    ]
    times = []
    for n in range(1, repeat + 1):
        window = [[data[min(max(i, 0), len(data) - 1)] for i in idx] for idx in node.frames_needed(n)]
        start = time.perf_counter()
        node.render(n, window)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def bridge_ms(
    host: OfxHost,
    identifier: str,
    frames: list[np.ndarray],
    repeat: int,
    params=None,
    same_frame: bool = False,
    warmup: int = 6,
) -> float:
    """Median time of the Render action in steady state: frames rendered in order (cycling
    through ``frames``, so each input is new to the server once its small cache is full), or
    frame 0 again and again (``same_frame``: a parameter tweak; inputs are reused)."""
    count = len(frames)
    inst = host.create_instance(
        identifier, FILTER, {"Source": lambda t: frames[int(t) % count]}, (0, 10**6), params=params or {}
    )
    times = []
    for i in range(warmup + repeat):
        status, _ = inst.render(0 if same_frame else i)
        if status != OK:
            raise SystemExit(f"render failed: {host.messages[-1:]}")
        if i >= warmup:
            times.append(inst.last_render_s)
    inst.destroy()
    return statistics.median(times) * 1e3


def threads_rps(host: OfxHost, frames: list[np.ndarray], threads: int, renders: int, radius: int = 2) -> float:
    """Renders per second of temporal_average on ONE instance with ``threads`` host threads
    rendering different frames at once (the plugin declares full thread safety)."""
    import threading

    count = len(frames)
    inst = host.create_instance(
        "org.vidfx.temporal_average",
        FILTER,
        {"Source": lambda t: frames[int(t) % count]},
        (0, 10**6),
        params={"radius": radius},
    )
    inst.render(0)  # configure once
    next_frame = iter(range(1, renders + 1))
    lock = threading.Lock()
    failures = []

    def worker():
        while True:
            with lock:
                n = next(next_frame, None)
            if n is None:
                return
            if inst.render(n)[0] != OK:
                failures.append(n)

    start = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    took = time.perf_counter() - start
    inst.destroy()
    if failures:
        raise SystemExit(f"{len(failures)} renders failed with {threads} threads: {host.messages[-1:]}")
    return renders / took


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1920x1080,3840x2160")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--ratio-node", default="vsr", help="node whose own time the overhead is compared with")
    ap.add_argument("--ratio-input", default="480x270", help="input size for that node (x4 -> 1080p)")
    ap.add_argument("--ratio-frames", type=int, default=8)
    ap.add_argument(
        "--threads",
        default="",
        help="only measure renders/s of temporal_average at 1080p on one instance with these host thread counts "
        "(e.g. 1,4,8)",
    )
    ap.add_argument("--thread-renders", type=int, default=24)
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    work = Path(tempfile.mkdtemp(prefix="vfxb"))
    bundle = ofx_build.build(work / "build", ofx_build.source_dir(), quiet=True)
    os.environ["VIDFX_SOCKET"] = str(work / "run" / "server.sock")
    os.environ["VIDFX_SERVER_CMD"] = f"{ofx_build.server_command()} --device cpu"
    try:
        host = OfxHost(str(bundle / "Contents" / "Linux-x86-64" / "vidfx.ofx"))
        host.cache_inputs, host.fill_output = True, False
        if args.threads:
            frames = make_frames(1920, 1080, 16)
            print("temporal_average r=2 1920x1080, one instance:")
            for n in (int(v) for v in args.threads.split(",")):
                print(f"  {n} host thread(s): {threads_rps(host, frames, n, args.thread_renders):6.2f} renders/s")
            return 0
        rows = []
        for size in args.sizes.split(","):
            w, h = parse_size(size)
            frames = make_frames(w, h, 6)
            inproc = in_process_ms("passthrough", frames, min(args.repeat, 5))
            rows.append(
                (
                    f"passthrough {w}x{h}, new frame",
                    inproc,
                    bridge_ms(host, "org.vidfx.passthrough", frames, args.repeat),
                )
            )
            rows.append(
                (
                    f"passthrough {w}x{h}, same frame again",
                    inproc,
                    bridge_ms(host, "org.vidfx.passthrough", frames, args.repeat, same_frame=True),
                )
            )
            if w <= 1920:
                frames = make_frames(w, h, 16)  # > the server's cache of 2 windows
                rows.append(
                    (
                        f"temporal_average r=2 {w}x{h}, in order",
                        in_process_ms("temporal_average", frames, min(args.repeat, 10), radius=2),
                        bridge_ms(host, "org.vidfx.temporal_average", frames, args.repeat, params={"radius": 2}),
                    )
                )
            del frames
        print(f"{'case':<44}{'in-process ms':>15}{'via OFX ms':>13}{'overhead ms':>13}")
        for name, a, b in rows:
            print(f"{name:<44}{a:>15.1f}{b:>13.1f}{b - a:>13.1f}")

        if args.ratio_node in node_types():
            w, h = parse_size(args.ratio_input)
            frames = make_frames(w, h, args.ratio_frames)
            start = time.perf_counter()
            vidfx.apply(args.ratio_node, [f[..., :3] for f in frames])
            own = (time.perf_counter() - start) / len(frames) * 1e3
            inst = host.create_instance(
                f"org.vidfx.{args.ratio_node}", FILTER, {"Source": lambda t: frames[int(t)]}, (0, len(frames) - 1)
            )
            total, out_shape = 0.0, None
            node_before = float(protocol.request("hello")[1]["node_seconds"])
            for i in range(len(frames)):
                status, img = inst.render(i)
                if status != OK:
                    raise SystemExit(f"{args.ratio_node} render failed: {host.messages[-1:]}")
                total += inst.last_render_s
                out_shape = img.shape
            inst.destroy()
            node_in_server = (float(protocol.request("hello")[1]["node_seconds"]) - node_before) / len(frames) * 1e3
            via = total / len(frames) * 1e3
            transport = next((b - a for n, a, b in rows if f"{out_shape[1]}x{out_shape[0]}, new frame" in n), None)
            print(f"\n{args.ratio_node} {w}x{h} -> {out_shape[1]}x{out_shape[0]}, {len(frames)} frames:")
            print(f"  own time (vidfx.apply, per frame)      {own:10.1f} ms")
            print(f"  through the OFX bridge (per frame)     {via:10.1f} ms  ({(via - own) / own * 100:+.1f} %)")
            print(f"  of which node code in the server       {node_in_server:10.1f} ms")
            print(
                f"  bridge overhead (via - node code)      {via - node_in_server:10.1f} ms  "
                f"({(via - node_in_server) / own * 100:.1f} % of the node's own time; target <= 15 %)"
            )
            if transport is not None:
                print(
                    f"  transport cost at the output size      {transport:10.1f} ms  "
                    f"({transport / own * 100:.1f} % of the node's time; target <= 15 %)"
                )
        else:
            print(f"\n(node {args.ratio_node!r} is not available here: ratio not measured)")
    finally:
        try:
            protocol.request("shutdown", timeout=10)
        except OSError:
            pass
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
