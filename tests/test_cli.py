"""The `vidfx` command line end to end, and every kind of bad input it must survive."""

import os
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import pytest

from vidfx.cli import main
from vidfx.io import probe

REPO = Path(__file__).resolve().parents[1]


def graph(tmp_path, text, name="g.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


PATTERN = """
    nodes:
      src: {type: pattern, width: 64, height: 36, fps: 24000/1001, frames: 12}
      avg: {type: temporal_average, input: src, radius: 1}
    outputs:
      - {input: avg, path: OUT}
"""


def pattern_graph(tmp_path, out="out.mp4"):
    return graph(tmp_path, PATTERN.replace("OUT", out))


@pytest.fixture
def clip(tmp_path):
    """A small real H.264 file written by vidfx itself."""
    assert main(["run", pattern_graph(tmp_path, "clip.mp4"), "-q"]) == 0
    return tmp_path / "clip.mp4"


def run_cli(args, capsys):
    code = main(args)
    err = capsys.readouterr().err
    return code, err


def test_run_writes_exact_rate_and_count(tmp_path, capsys):
    code, err = run_cli(["run", pattern_graph(tmp_path), "--set", "avg.radius=2"], capsys)
    assert code == 0, err
    info = probe(tmp_path / "out.mp4")
    assert info.fps == Fraction(24000, 1001) and info.num_frames == 12
    assert (info.width, info.height) == (64, 36)
    assert "wrote 12 frames" in err and "fps" in err


def test_frames_range_and_output_override(tmp_path, capsys):
    other = tmp_path / "sub.mkv"
    code, err = run_cli(["run", pattern_graph(tmp_path), "--frames", "2:9", "-o", str(other), "-q"], capsys)
    assert code == 0, err
    assert probe(other).num_frames == 7
    assert not (tmp_path / "out.mp4").exists()


def test_read_what_we_wrote(tmp_path, clip, capsys):
    g = graph(
        tmp_path,
        """
        inputs: {src: placeholder.mp4}
        nodes: {small: {type: resize, input: src, width: 32}}
        outputs: [small.mov]
    """,
    )
    code, err = run_cli(["run", g, "-i", str(clip), "-q"], capsys)
    assert code == 0, err
    info = probe(tmp_path / "small.mov")
    assert (info.width, info.height, info.num_frames) == (32, 18, 12)
    assert info.codec == "prores"


def test_nodes_validate_probe(tmp_path, clip, capsys):
    assert main(["nodes"]) == 0
    out = capsys.readouterr().out
    assert "temporal_average" in out and "radius: int[0..32], default 1" in out and "codec: choice" in out
    assert main(["validate", pattern_graph(tmp_path)]) == 0
    assert "ok (2 nodes, 1 outputs)" in capsys.readouterr().out
    assert main(["probe", str(clip)]) == 0
    assert "24000/1001" in capsys.readouterr().out


def test_console_script_exit_code(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "vidfx.cli", "run", str(tmp_path / "missing.yaml")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "graph file not found" in proc.stderr
    assert "Traceback" not in proc.stderr


def one_line(err):
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def reader_graph(tmp_path, src, out="out.mp4"):
    return graph(
        tmp_path,
        f"""
        inputs: {{src: "{src}"}}
        nodes: {{p: {{type: passthrough, input: src}}}}
        outputs: ["{out}"]
    """,
    )


def test_missing_input_file(tmp_path, capsys):
    code, err = run_cli(["run", reader_graph(tmp_path, tmp_path / "nope.mp4"), "-q"], capsys)
    assert code == 3 and "nope.mp4" in one_line(err)


def test_corrupt_media_file(tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(os.urandom(20000))
    code, err = run_cli(["run", reader_graph(tmp_path, bad), "-q"], capsys)
    assert code == 3 and "bad.mp4" in one_line(err)


def test_truncated_media_file(tmp_path, clip, capsys):
    cut = tmp_path / "cut.mp4"
    data = clip.read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    code, err = run_cli(["run", reader_graph(tmp_path, cut), "-q"], capsys)
    # either a clear error, or whatever frames survive; never a crash or a traceback
    assert code in (0, 3), err
    if code == 3:
        assert "cut.mp4" in one_line(err)


def test_not_media_at_all(tmp_path, capsys):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 100)
    code, err = run_cli(["run", reader_graph(tmp_path, text), "-q"], capsys)
    assert code == 3 and "notes.mp4" in one_line(err)


@pytest.mark.parametrize(
    "body, needle",
    [
        ("nodes: {a: {type: warp_drive}}\noutputs: [o.mp4]", "unknown node type 'warp_drive'"),
        ("nodes: {a: {type: temporal_average, radius: -1}}\noutputs: [o.mp4]", "a.radius: -1 is below the minimum 0"),
        ("nodes: {a: {type: resize, colour: red}}\noutputs: [o.mp4]", "a: unknown parameter 'colour'"),
        ("nodes:\n  a: {type: passthrough, input: b}\n  b: {type: passthrough, input: a}\noutputs: [o.mp4]", "cycle"),
        ("nodes: {a: {type: pattern}}\noutputs: [{path: o.mp4, codec: mpeg1}]", "codec"),
    ],
)
def test_bad_graphs_exit_2(tmp_path, capsys, body, needle):
    code, err = run_cli(["run", graph(tmp_path, body), "-q"], capsys)
    assert code == 2 and needle in one_line(err)


def test_output_folder_missing(tmp_path, capsys):
    code, err = run_cli(["run", pattern_graph(tmp_path, "no/such/dir/out.mp4"), "-q"], capsys)
    assert code == 3 and "no/such/dir" in one_line(err)
    assert not (tmp_path / "no").exists()


@pytest.fixture
def tiny_disk(tmp_path):
    mount = tmp_path / "tiny"
    mount.mkdir()
    ok = (
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(mount)], capture_output=True).returncode
        == 0
    )
    if not ok:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", str(mount)])


def test_full_disk_leaves_nothing_that_looks_finished(tmp_path, capsys, tiny_disk):
    g = graph(
        tmp_path,
        """
        nodes:
          src: {type: pattern, width: 256, height: 256, frames: 30}
        outputs:
          - {input: src, path: OUT, codec: ffv1}
    """.replace("OUT", str(tiny_disk / "big.mkv")),
    )
    code, err = run_cli(["run", g, "-q"], capsys)
    line = one_line(err)
    assert code == 3 and ("space" in line.lower() or "full" in line.lower())
    assert list(tiny_disk.iterdir()) == []


def test_bad_frames_and_set_syntax(tmp_path, capsys):
    code, err = run_cli(["run", pattern_graph(tmp_path), "--frames", "9:2"], capsys)
    assert code == 2 and "--frames 9:2" in one_line(err)
    code, err = run_cli(["run", pattern_graph(tmp_path), "--set", "radius=2"], capsys)
    assert code == 2 and "node.param=value" in one_line(err)


def test_pass_through_subcommands_take_their_own_flags(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--help"])
    assert exit_.value.code == 0 and "--socket" in capsys.readouterr().out


@pytest.mark.parametrize("example", sorted((REPO / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_examples_validate(example, capsys):
    (REPO / "out").mkdir(exist_ok=True)  # where the examples write (as setup.sh makes it)
    assert main(["validate", str(example)]) == 0, capsys.readouterr().err


def test_validate_reports_a_missing_output_folder(tmp_path, capsys):
    g = graph(tmp_path, PATTERN.replace("OUT", "no/such/folder/out.mp4"))
    assert main(["validate", g]) == 3
    assert "folder" in capsys.readouterr().err
