"""vidfx/core knows none of its clients: no import of io, server, ops, nodes or model packages."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import vidfx

CORE = Path(vidfx.__file__).parent / "core"
CLIENTS = ("io", "server", "ops", "nodes", "vsr", "segment", "jumpcut", "ofx_bridge", "api", "clip", "cli")


def _imported_modules(path: Path) -> set[str]:
    """Absolute names of the modules a file imports (relative imports resolved in vidfx.core)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                names.add(node.module or "")
            else:
                parts = ["vidfx", "core"][: 3 - node.level] if node.level <= 2 else []
                names.add(".".join(parts + ([node.module] if node.module else [])))
    return names


def test_core_sources_import_no_client():
    for path in sorted(CORE.glob("*.py")):
        for name in _imported_modules(path):
            assert not any(name == f"vidfx.{c}" or name.startswith(f"vidfx.{c}.") for c in CLIENTS), (
                f"{path.name} imports {name}"
            )


def test_running_a_graph_of_core_nodes_loads_no_model_package():
    code = (
        "import sys, vidfx\n"
        "g = vidfx.Graph()\n"
        "g.add(vidfx.ArraySource([[[0.5]]] * 3))\n"
        "g.frame('frames', 1)\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('vidfx.'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    loaded = [m for m in out if m.split(".")[1] in ("io", "server", "ops", "vsr", "segment", "jumpcut")]
    assert loaded == [], loaded
