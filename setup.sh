#!/usr/bin/env bash
# Sets vidfx up on a fresh machine and renders the main job on the project's own sample media.
#   ./setup.sh           .venv + build the wheel + install it (not editable) with all extras + render
#   ./setup.sh --no-run  install only (what CI does before the tests)
#   ./setup.sh --dev     editable install, for working on vidfx itself
# Versions: pyproject.toml states ranges; constraints.txt pins what this project is tested with
# (torch 2.14.1 comes from the local wheels on the project's machines).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
PIP=(.venv/bin/python -m pip --quiet --disable-pip-version-check)
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
if [ "${1:-}" = "--dev" ]; then
    "${PIP[@]}" install -c constraints.txt -e ".[all]"
else
    rm -rf dist
    "${PIP[@]}" wheel --no-deps -w dist .
    wheel=$(ls dist/vidfx-*-py3-none-any.whl)
    "${PIP[@]}" install -c constraints.txt "${wheel}[all]"
    # the same version may be installed already (or editable): make this wheel the one in use
    "${PIP[@]}" install --no-deps --force-reinstall "$wheel"
fi
if [ "${1:-}" != "--no-run" ] && [ "${1:-}" != "--dev" ]; then
    mkdir -p out
    .venv/bin/vidfx run examples/upscale.yaml
    echo "rendered out/upscaled.mov from sample_media/ (see README for more examples)"
fi
