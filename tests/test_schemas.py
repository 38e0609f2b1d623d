"""`vidfx nodes` reads node schemas from a per-installation cache: no torch on the second run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from vidfx.core.registry import node_types
from vidfx.core.schemas import describe, param_from


def _run(code: str, cache) -> str:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout


def test_listing_nodes_needs_no_torch_once_cached(tmp_path):
    code = "import sys\nfrom vidfx.cli import main\nmain(['nodes', '--json'])\nprint('TORCH', 'torch' in sys.modules)\n"
    first = _run(code, tmp_path)
    second = _run(code, tmp_path)
    assert first.splitlines()[-1] == "TORCH True"  # the first listing imports the node modules
    assert second.splitlines()[-1] == "TORCH False"
    listed = json.loads("\n".join(second.splitlines()[:-1]))
    assert listed["resize"] == json.loads(json.dumps(describe(node_types()["resize"])))
    assert len(list((tmp_path / "vidfx").glob("schemas-*.json"))) == 1


def test_params_survive_the_round_trip():
    for cls in node_types().values():
        for p in cls.params:
            again = param_from(json.loads(json.dumps(describe(cls)))["params"][list(cls.params).index(p)])
            assert again.describe() == p.describe()
