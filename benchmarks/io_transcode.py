"""Pass-through transcode speed: vidfx (reader -> writer) against the ffmpeg CLI.

    .venv/bin/python benchmarks/io_transcode.py [--seconds 10] [--preset veryfast] [--crf 20]

Makes a synthetic 1080p H.264 clip (ffmpeg's testsrc2 pattern, cached in /tmp), then
transcodes it with libx264 at the same preset/crf three ways, in the same run:
  ffmpeg   `ffmpeg -i in.mp4 -c:v libx264 -preset P -crf C -an out.mp4`
  vidfx    vidfx.io reader -> writer loop (frames stay lazy: decoder frames go straight
           to the encoder, no pixel conversion)
  engine   the same as a one-node pass-through graph run in-process (`Graph.run`)
  vidfx-cli `vidfx run` on that graph (engine + Python start-up and imports)
and prints wall times and the ratio to ffmpeg (target: <= 1.15x). Needs the ffmpeg
command line tool (Debian: `apt-get install -y ffmpeg`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_source(path: Path, seconds: int) -> None:
    """A 1080p25 H.264 test clip (moving test pattern with noise-free detail)."""
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size=1920x1080:rate=25:duration={seconds}",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-crf",
            "18",
            "-pix_fmt",
            "yuv420p",
            str(path),
        ],
        check=True,
    )


def run_ffmpeg(src: Path, dst: Path, preset: str, crf: int) -> float:
    start = time.perf_counter()
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-i",
            str(src),
            "-c:v",
            "libx264",
            "-preset",
            preset,
            "-crf",
            str(crf),
            "-an",
            str(dst),
        ],
        check=True,
    )
    return time.perf_counter() - start


def run_vidfx(src: Path, dst: Path, preset: str, crf: int) -> tuple[float, int, int]:
    from vidfx.io import copy_media

    start = time.perf_counter()
    n, sink = copy_media(src, dst, codec="h264", preset=preset, crf=crf, audio="none")
    return time.perf_counter() - start, n, sink.fast_frames


def write_graph(src: Path, dst: Path, preset: str, crf: int, work: Path) -> Path:
    graph = work / f"{dst.stem}.yaml"
    graph.write_text(
        f'inputs: {{src: "{src}"}}\n'
        "nodes: {same: {type: passthrough, input: src}}\n"
        f'outputs:\n  - {{input: same, path: "{dst}", codec: h264, preset: {preset}, crf: {crf}}}\n'
    )
    return graph


def run_vidfx_engine(src: Path, dst: Path, preset: str, crf: int, work: Path) -> float | None:
    try:
        from vidfx.core.graph import load
    except ImportError:
        return None
    graph = write_graph(src, dst, preset, crf, work)
    start = time.perf_counter()
    load(graph).run(device="cpu")
    return time.perf_counter() - start


def run_vidfx_cli(src: Path, dst: Path, preset: str, crf: int, work: Path) -> float | None:
    graph = write_graph(src, dst, preset, crf, work)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "vidfx.cli", "run", str(graph), "-q"], capture_output=True, text=True, cwd=REPO
    )
    if proc.returncode != 0:
        print(f"(vidfx run failed: {proc.stderr.strip()[:200]})")
        return None
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--preset", default="veryfast")
    parser.add_argument("--crf", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=1, help="alternating runs; best time is kept")
    args = parser.parse_args(argv)
    if not shutil.which("ffmpeg"):
        print("the ffmpeg command line tool is needed (apt-get install -y ffmpeg)")
        return 1
    src = Path(tempfile.gettempdir()) / f"vidfx_bench_1080p_{args.seconds}s.mp4"
    if not src.exists():
        make_source(src, args.seconds)
    from vidfx.io import probe

    info = probe(src)
    print(
        f"source: {info.width}x{info.height} {info.fps} fps, {info.num_frames} frames, "
        f"libx264 preset={args.preset} crf={args.crf}, {os.cpu_count()} CPUs"
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        best: dict[str, float] = {}
        for _ in range(args.repeat):
            t = run_ffmpeg(src, work / "ff.mp4", args.preset, args.crf)
            best["ffmpeg"] = min(best.get("ffmpeg", t), t)
            t, n, fast = run_vidfx(src, work / "vx.mp4", args.preset, args.crf)
            best["vidfx (reader->writer)"] = min(best.get("vidfx (reader->writer)", t), t)
            t = run_vidfx_engine(src, work / "engine.mp4", args.preset, args.crf, work)
            if t is not None:
                best["vidfx engine (graph.run)"] = min(best.get("vidfx engine (graph.run)", t), t)
            t = run_vidfx_cli(src, work / "cli.mp4", args.preset, args.crf, work)
            if t is not None:
                best["vidfx run (CLI, engine)"] = min(best.get("vidfx run (CLI, engine)", t), t)
        assert probe(work / "vx.mp4").num_frames == info.num_frames
        print(f"vidfx frames: {n}, encoded without pixel conversion: {fast}")
        print(f"{'path':<26} {'seconds':>8} {'fps':>7} {'vs ffmpeg':>9}")
        for name, t in best.items():
            print(f"{name:<26} {t:8.2f} {info.num_frames / t:7.1f} {t / best['ffmpeg']:8.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
