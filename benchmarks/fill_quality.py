"""Quality table of video object removal (telea / ns / propagation / ours) on synthetic holes.

    .venv/bin/python benchmarks/fill_quality.py [CLIPS...] [--json FILE] [--methods telea ns propagation]

Same as ``vidfx eval fill`` (see vidfx/fill/evaluate.py): all methods on the default clips
(moving-camera clips/ and tripod scenes/) unless told otherwise; every option is passed through.
"""

import sys

from vidfx.fill.evaluate import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
