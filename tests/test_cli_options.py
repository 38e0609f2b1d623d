"""Command-line conveniences pipelines rely on: version, flags anywhere, per-output options,
signals, quiet broken pipes."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import vidfx
from vidfx.cli import main
from vidfx.io import probe

SAMPLE = str(Path(__file__).resolve().parents[1] / "sample_media" / "motion_320x180.mp4")
VIDFX = [sys.executable, "-m", "vidfx.cli"]


def graph(tmp_path, text, name="g.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"vidfx {vidfx.__version__}"


def test_global_flags_after_the_subcommand(tmp_path, capsys):
    g = graph(tmp_path, "nodes: {src: {type: pattern, width: 32, height: 18, frames: 2}}\noutputs: [out.mp4]\n")
    assert main(["run", g, "-q", "--debug"]) == 0
    assert main(["validate", g, "--debug"]) == 0
    assert main(["nodes", "resize", "--debug"]) == 0


def test_output_options_from_the_command_line(tmp_path, capsys):
    text = """
        inputs: {src: SAMPLE}
        nodes:
          short: {type: trim, input: src, end: 3}
        outputs:
          - {input: short, path: a.mp4}
          - {input: short, path: b.mkv}
    """.replace("SAMPLE", SAMPLE)
    g = graph(tmp_path, text)
    args = ["run", g, "-q", "-o", str(tmp_path / "a.mov"), "--codec", "prores_422hq", "--bit-depth", "10"]
    assert main(args + ["--output-option", "2:codec=ffv1"]) == 0, capsys.readouterr().err
    assert probe(tmp_path / "a.mov").codec == "prores" and probe(tmp_path / "a.mov").bit_depth == 10
    assert probe(tmp_path / "b.mkv").codec == "ffv1"
    assert main(["run", g, "-q", "--output-option", "codec"]) == 2
    assert main(["run", g, "-q", "--output-option", "3:codec=ffv1"]) == 2
    assert main(["run", g, "-q", "--codec", "prores_9000"]) == 2
    capsys.readouterr()


def test_broken_pipe_is_quiet(tmp_path):
    reader = subprocess.Popen(VIDFX + ["nodes"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert reader.stdout is not None
    reader.stdout.read(10)
    reader.stdout.close()  # like `| head -c 10`
    _, err = reader.communicate(timeout=120)
    assert b"Broken pipe" not in err and b"Traceback" not in err, err
    assert reader.returncode in (0, 141)


@pytest.mark.parametrize(
    "sig, output",
    [
        (signal.SIGTERM, "{path: out.mov, codec: prores_422hq}"),
        (signal.SIGHUP, "{path: out.mov, codec: prores_422hq}"),
        (signal.SIGTERM, "{path: frames_%04d.png}"),
    ],
)
def test_sigterm_and_sighup_remove_unfinished_outputs(tmp_path, sig, output):
    g = graph(
        tmp_path,
        """
        nodes:
          src: {type: pattern, width: 640, height: 360, frames: 100000}
          slow: {type: temporal_average, input: src, radius: 6}
        outputs:
          - {input: slow, OUTPUT}
        """.replace("OUTPUT", output.strip("{}")),
    )
    proc = subprocess.Popen(VIDFX + ["run", g], stderr=subprocess.PIPE, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(".") for p in tmp_path.iterdir()):  # the temporary output exists
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert b"unfinished outputs were removed" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.yaml"]


def test_cluster_options_need_the_ray_backend(tmp_path, capsys):
    g = graph(tmp_path, "nodes: {src: {type: pattern, width: 32, height: 18, frames: 2}}\noutputs: [out.mkv]\n")
    assert main(["run", g, "-q", "--workers", "2"]) == 2
    assert "--backend ray" in capsys.readouterr().err
    assert main(["run", g, "-q", "--backend", "spark"]) == 2
    assert "unknown backend 'spark'" in capsys.readouterr().err


def test_ray_backend_from_the_command_line_matches_a_local_run(tmp_path, capsys):
    text = f"""
        inputs: {{src: "{SAMPLE}"}}
        nodes:
          short: {{type: trim, input: src, end: 24}}
          avg: {{type: temporal_average, input: short, radius: 2}}
        outputs:
          - {{input: avg, path: ray.mkv, codec: ffv1}}
    """
    g = graph(tmp_path, text)
    args = ["run", g, "-q", "--backend", "ray", "--workers", "2", "--segment-frames", "10"]
    assert main(args) == 0, capsys.readouterr().err
    assert main(["run", g, "-q", "-o", str(tmp_path / "local.mkv")]) == 0
    ray_clip, local = vidfx.read(str(tmp_path / "ray.mkv"), device="cpu"), vidfx.read(str(tmp_path / "local.mkv"))
    assert len(ray_clip) == len(local) == 24
    assert all((a.data == b.data).all() for a, b in zip(ray_clip, local))
    assert [a.pts for a in ray_clip] == [b.pts for b in local]
