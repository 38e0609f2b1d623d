#!/usr/bin/env bash
# Sets vidfx up on a fresh machine (virtual environment + package + all extras) and renders
# the main job on the project's own sample media. `./setup.sh --no-run` only installs.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch/torchvision are pinned in pyproject.toml (2.14.1 / 0.29.1), which pip takes from local wheels here.
.venv/bin/python -m pip install --quiet -e ".[all]"
if [ "${1:-}" != "--no-run" ]; then
    mkdir -p out
    .venv/bin/vidfx run examples/upscale.yaml
    echo "rendered out/upscaled.mov from sample_media/ (see README for more examples)"
fi
