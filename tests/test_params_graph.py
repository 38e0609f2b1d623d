"""Parameter schema and graph files: validation errors name the node, parameter or file."""

import textwrap

import pytest

import vidfx
from vidfx.core.errors import GraphError, ParamError
from vidfx.core.graph import load
from vidfx.core.params import Param, resolve_params

SCHEMA = (
    Param("radius", "int", 1, min=0, max=8),
    Param("gain", "float", 1.0, min=0),
    Param("mode", "choice", "a", choices=("a", "b")),
    Param("classes", "list", ["sky"], choices=("sky", "road")),
    Param("on", "bool", False),
)


def test_defaults_and_coercion_from_text():
    p = resolve_params(SCHEMA, {"radius": "3", "gain": "0.5", "on": "true", "classes": "[road, sky]"}, "n")
    assert (p.radius, p.gain, p.on, p.classes, p.mode) == (3, 0.5, True, ["road", "sky"], "a")


@pytest.mark.parametrize(
    "values, message",
    [
        ({"radius": 9}, r"n\.radius: 9 is above the maximum 8"),
        ({"radius": 1.5}, r"n\.radius: expected an integer"),
        ({"gain": "loud"}, r"n\.gain: expected a number"),
        ({"mode": "c"}, r"n\.mode: 'c' is not one of a, b"),
        ({"classes": ["sky", "tree"]}, r"unknown value\(s\) tree; valid: sky, road"),
        ({"on": 3}, r"n\.on: expected true or false"),
        ({"colour": 1}, r"n: unknown parameter 'colour' \(valid: radius, gain, mode, classes, on\)"),
    ],
)
def test_bad_values_name_the_parameter(values, message):
    with pytest.raises(ParamError, match=message):
        resolve_params(SCHEMA, values, "n")


def write(tmp_path, text):
    path = tmp_path / "g.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_graph_file_builds_and_resolves_paths(tmp_path):
    g = load(
        write(
            tmp_path,
            """
        inputs:
          src: clip.mp4
        nodes:
          avg: {type: temporal_average, input: src, radius: 2}
          small: {type: resize, input: avg, width: 64}
        outputs:
          - {path: out.mov, codec: prores_422hq}
    """,
        ),
        set={"avg.radius": "3"},
    )
    assert g.inputs_of == {"src": [], "avg": ["src"], "small": ["avg"]}
    assert g.nodes["avg"].p.radius == 3
    assert g.nodes["src"].p.path == str(tmp_path / "clip.mp4")
    assert g.outputs[0].input == "small" and g.outputs[0].path == str(tmp_path / "out.mov")


def test_cli_input_output_override(tmp_path):
    g = load(
        write(
            tmp_path,
            """
        inputs: {src: a.mp4}
        nodes: {p: {type: passthrough, input: src}}
        outputs: [b.mp4]
    """,
        ),
        input="/x/in.mp4",
        output="/y/out.mp4",
    )
    assert g.nodes["src"].p.path == "/x/in.mp4" and g.outputs[0].path == "/y/out.mp4"


@pytest.mark.parametrize(
    "text, message",
    [
        ("nodes: {a: {type: blur9000}}", r"unknown node type 'blur9000'; known: .*resize"),
        ("nodes: {a: {type: resize, input: nowhere, width: 5}}", r"node 'a': input 'nowhere' is not a node"),
        ("nodes: {a: {type: resize, widht: 5}}", r"a: unknown parameter 'widht'"),
        ("nodes: {a: {type: temporal_average, radius: 99}}", r"a\.radius: 99 is above the maximum 32"),
        ("nodes: {a: {type: temporal_average, radius: many}}", r"a\.radius: expected an integer"),
        (
            "nodes:\n  a: {type: passthrough, input: b}\n  b: {type: passthrough, input: a}\noutputs: [o.mp4]",
            r"cycle: a -> b -> a|cycle: b -> a -> b",
        ),
        ("nodes: {a: {type: over, input: x}, x: {type: passthrough, input: a}}", r"takes 2 input\(s\), got 1"),
        ("nodez: {}", r"unknown top-level key 'nodez'"),
        ("nodes: [1, 2", r"g\.yaml: line \d+ is not valid YAML"),
        ("nodes: {a: {input: b}}", r"node 'a': needs a 'type'"),
    ],
)
def test_bad_graph_files_give_one_clear_error(tmp_path, text, message):
    with pytest.raises((GraphError, ParamError), match=message) as err:
        g = load(write(tmp_path, text))
        g.order()
    assert "\n" not in str(err.value)


def test_missing_graph_file(tmp_path):
    with pytest.raises(GraphError, match="nope.yaml: graph file not found"):
        load(tmp_path / "nope.yaml")


def test_set_unknown_node(tmp_path):
    with pytest.raises(GraphError, match="--set: no node named 'zz'"):
        load(write(tmp_path, "nodes: {a: {type: passthrough}}"), set={"zz.radius": "1"})


def test_graph_built_in_code():
    g = vidfx.Graph()
    src = g.add("pattern", width=32, height=16, frames=5)
    avg = g.add("temporal_average", src, radius=1)
    assert g.frame(avg, 2).data.shape == (3, 16, 32)
    with pytest.raises(GraphError, match="used twice"):
        g.add("passthrough", src, name=avg)
