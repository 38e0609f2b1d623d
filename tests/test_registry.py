"""Node discovery through the ``vidfx.nodes`` entry-point group, and duplicate names."""

from __future__ import annotations

import sys
import textwrap

import pytest

import vidfx
from vidfx.core.errors import GraphError
from vidfx.core.node import Node
from vidfx.core.registry import node_type, register, type_names, unregister


def test_builtins_come_from_entry_points():
    names = type_names()
    for name in ("read", "resize", "temporal_average", "vsr", "segment", "jumpcut", "pattern"):
        assert name in names
    assert node_type("resize").__module__ == "vidfx.nodes.basic"


def test_register_refuses_a_builtin_name_and_names_both():
    class MyResize(Node):
        type_name = "resize"

    with pytest.raises(GraphError) as err:
        register(MyResize)
    assert "vidfx.nodes.basic:Resize" in str(err.value) and "MyResize" in str(err.value)
    assert node_type("resize").__module__ == "vidfx.nodes.basic"  # the built-in was not replaced


def test_register_and_unregister_a_console_node():
    class Invert(Node):
        type_name = "test_invert"

        def render(self, n, inputs):
            return inputs[0][0].with_data(1 - inputs[0][0].data)

    register(Invert)
    register(Invert)  # the same class again is fine
    try:
        out = vidfx.apply("test_invert", [vidfx.to_tensor([[0.25]])])
        assert float(out[0]) == 0.75
    finally:
        unregister(Invert)
    with pytest.raises(GraphError, match="unknown node type"):
        node_type("test_invert")


def _fake_distribution(root, dist: str, module: str, entry: str) -> None:
    """An installed package on disk: a module with a node and its dist-info entry points."""
    (root / f"{module}.py").write_text(
        textwrap.dedent("""
        from vidfx.core.node import Node

        class Halve(Node):
            type_name = "test_halve"

            def render(self, n, inputs):
                return inputs[0][0].with_data(inputs[0][0].data * 0.5)
    """)
    )
    info = root / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[vidfx.nodes]\n{entry}\n")


def test_a_third_party_package_adds_a_node_by_installing(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, "halver", "halver_nodes", "test_halve = halver_nodes:Halve")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "test_halve" in type_names()
    out = vidfx.apply("test_halve", [vidfx.to_tensor([[0.5]])])
    assert float(out[0]) == 0.25
    assert vidfx.read  # the clip API reaches it by name too
    clip = vidfx.Clip.from_frames([vidfx.to_tensor([[0.5]])], device="cpu").test_halve()
    assert float(clip.frame(0).data) == 0.25
    sys.modules.pop("halver_nodes", None)


def test_two_packages_declaring_one_name_is_an_error_naming_both(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    _fake_distribution(a, "halver_a", "halver_a_nodes", "test_halve = halver_a_nodes:Halve")
    _fake_distribution(b, "halver_b", "halver_b_nodes", "test_halve = halver_b_nodes:Halve")
    monkeypatch.syspath_prepend(str(a))
    monkeypatch.syspath_prepend(str(b))
    with pytest.raises(GraphError) as err:
        node_type("test_halve")
    assert "halver_a_nodes:Halve" in str(err.value) and "halver_b_nodes:Halve" in str(err.value)
    assert node_type("resize")  # other types still load
