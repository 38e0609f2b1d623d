"""Every user error is exit 2 or 3 with one clear line, never an internal error."""

from __future__ import annotations

import os
import textwrap

import pytest

from vidfx.cli import main


def graph(tmp_path, text, name="g.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("vidfx: error:"), err
    return lines[0]


SMALL = """
    nodes:
      src: {type: pattern, width: 64, height: 36, frames: 4}
      avg: {type: temporal_average, input: src, radius: RADIUS}
    outputs:
      - {input: avg, path: out.mp4}
"""


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_non_finite_parameters(tmp_path, capsys, value):
    path = graph(tmp_path, SMALL.replace("RADIUS", "1"))
    assert main(["run", path, "-q", "--set", f"avg.radius={value}"]) == 2
    assert "finite" in one_line_error(capsys)
    doc = SMALL.replace("RADIUS", value)
    assert main(["run", graph(tmp_path, doc, "nan.yaml"), "-q"]) == 2
    assert "avg.radius" in one_line_error(capsys)


@pytest.mark.parametrize(
    "text, words",
    [
        ("nodes: {src: {type: pattern}}\noutputs: [5]\n", "output 1"),
        ("inputs: {src: 12}\noutputs: [{input: src, path: o.mp4}]\n", "input 'src'"),
        ("inputs: {src: {path: [a, b]}}\noutputs: [o.mp4]\n", "path must be text"),
        ("nodes: {a: {type: [pattern]}}\noutputs: [o.mp4]\n", "type must be"),
        ("nodes: {src: {type: pattern}, b: {type: passthrough, input: [1]}}\noutputs: [o.mp4]\n", "node names"),
        ("nodes: {src: {type: pattern}}\noutputs: [{input: 3, path: o.mp4}]\n", "node name"),
    ],
)
def test_wrong_yaml_types_anywhere(tmp_path, capsys, text, words):
    assert main(["run", graph(tmp_path, text), "-q"]) == 2
    assert words in one_line_error(capsys)


def test_unknown_device(tmp_path, capsys):
    assert main(["run", graph(tmp_path, SMALL.replace("RADIUS", "1")), "-q", "--device", "tpu"]) == 2
    assert "tpu" in one_line_error(capsys)


def test_yaml_alias_bomb_is_bounded(tmp_path, capsys):
    # a parameter that refers to 10^9 strings through nested aliases: a few hundred bytes of YAML
    anchors = ["x0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        anchors.append(f"x{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    doc = (
        "defs:\n"
        + textwrap.indent("\n".join(anchors), "  ")
        + "\nnodes:\n  src: {type: pattern, frames: 2}\n  j: {type: jumpcut, input: src, cuts: *a8}\n"
        + "outputs: [o.mp4]\n"
    )
    path = tmp_path / "bomb.yaml"
    path.write_text(doc)
    assert main(["run", str(path), "-q"]) == 2
    assert "expands to more than" in one_line_error(capsys)
    bomb_value = "[" + ", ".join(["*a8"] * 3) + "]"
    set_value = "defs: [" + ", ".join(a.split(": ", 1)[1] for a in anchors) + "]\nv: " + bomb_value
    assert main(["run", graph(tmp_path, SMALL.replace("RADIUS", "1")), "-q", "--set", "avg.radius=" + set_value]) == 2
    assert "expands to more than" in one_line_error(capsys)


def test_a_frame_too_large_for_memory_is_refused_before_allocating(tmp_path, capsys):
    text = """
        nodes:
          src: {type: pattern, width: 64, height: 36, frames: 2}
          big: {type: resize, input: src, width: 32768, height: 32768}
        outputs:
          - {input: big, path: out.exr}
    """
    assert main(["run", graph(tmp_path, text), "-q"]) == 2
    line = one_line_error(capsys)
    assert "big" in line and "GiB" in line
    assert not list(tmp_path.glob("out*"))


def _copy_graph(tmp_path, src, out):
    return graph(
        tmp_path,
        f"""
        inputs: {{src: "{src}"}}
        nodes:
          same: {{type: passthrough, input: src}}
        outputs:
          - {{input: same, path: "{out}"}}
        """,
    )


@pytest.mark.parametrize("how", ["same path", "symlink", "hard link"])
def test_output_that_is_the_input_is_refused_and_the_input_kept(tmp_path, capsys, how):
    src = tmp_path / "clip.mp4"
    assert main(["run", graph(tmp_path, SMALL.replace("RADIUS", "1").replace("out.mp4", str(src))), "-q"]) == 0
    before = src.read_bytes()
    out = src
    if how == "symlink":
        out = tmp_path / "link.mp4"
        out.symlink_to(src)
    elif how == "hard link":
        out = tmp_path / "hard.mp4"
        os.link(src, out)
    assert main(["run", _copy_graph(tmp_path, src, out), "-q"]) == 2
    assert "input" in one_line_error(capsys)
    assert src.read_bytes() == before
    assert main(["run", _copy_graph(tmp_path, src, tmp_path / "elsewhere.mp4"), "-q", "-o", str(src)]) == 2
    capsys.readouterr()
    assert main(["validate", _copy_graph(tmp_path, src, out)]) == 2
    capsys.readouterr()
    assert src.read_bytes() == before
