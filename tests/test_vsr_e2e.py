"""End to end: `vidfx run` with a vsr node on sample media (short, small)."""

import subprocess
import sys
from pathlib import Path

import av

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_media" / "motion_320x180.mp4"
VIDFX = Path(sys.executable).parent / "vidfx"


def test_vidfx_run_vsr(tmp_path):
    assert SAMPLE.is_file(), f"sample media missing: {SAMPLE}"
    assert (ROOT / "vidfx" / "vsr" / "weights" / "tiny_x4.pt").is_file(), "shipped weights tiny_x4.pt missing"
    graph = tmp_path / "g.yaml"
    out = tmp_path / "up.mp4"
    graph.write_text(f"""
version: 1
inputs:
  src: {SAMPLE}
nodes:
  small: {{type: resize, input: src, width: 80, height: 46, kernel: area}}
  up: {{type: vsr, input: small, scale: 4, chunk: 4, overlap: 1}}
outputs:
  - input: up
    path: {out}
""")
    cmd = [str(VIDFX), "run", str(graph), "--frames", "0:6", "--quiet"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    with av.open(str(out)) as c:
        frames = [f for f in c.decode(video=0)]
    assert len(frames) == 6
    assert (frames[0].width, frames[0].height) == (320, 184)


def test_vidfx_run_vsr_missing_weights_is_one_line_error(tmp_path):
    assert SAMPLE.is_file(), f"sample media missing: {SAMPLE}"
    graph = tmp_path / "g.yaml"
    graph.write_text(f"""
inputs:
  src: {SAMPLE}
nodes:
  up: {{type: vsr, input: src, weights: {tmp_path / "missing.pt"}}}
outputs:
  - path: {tmp_path / "x.mp4"}
""")
    res = subprocess.run([str(VIDFX), "run", str(graph), "--quiet"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 3
    assert "missing.pt" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "x.mp4").exists()
