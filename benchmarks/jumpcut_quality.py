"""Quality table of the jump-cut transitions (crossfade / flow / ours) on simulated cuts.

    .venv/bin/python benchmarks/jumpcut_quality.py [CLIPS...] [--json FILE] [--threads 1]

Same as ``vidfx eval jumpcut`` (see vidfx/jumpcut/evaluate.py); results are recorded in docs/jumpcut.md.
"""

import sys

from vidfx.jumpcut.evaluate import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
