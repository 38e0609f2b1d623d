"""Every graph in examples/ runs end to end with the installed package (a short frame range,
outputs redirected to a temporary folder)."""

from __future__ import annotations

from pathlib import Path

import pytest

import vidfx

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs(example, tmp_path):
    graph = vidfx.load(example)
    for source in graph.nodes.values():
        path = getattr(source.p, "path", None)
        if path is not None and "shared/data" in path and not Path(path).exists():
            pytest.fail(f"{example.name}: the development data it names is missing: {path}")
    for out in graph.outputs:
        out.path = str(tmp_path / Path(out.path).name)
    summary = graph.run(device="cpu", frames=(0, 12))
    assert summary.frames and all(count == 12 for count in summary.frames.values()), summary.frames
    for out in graph.outputs:
        written = vidfx.read(out.path, device="cpu")
        assert len(written) == 12
