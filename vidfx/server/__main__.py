"""``python -m vidfx.server``: what the OFX plugin runs to start the server."""

import sys

from vidfx.server import main

sys.exit(main(sys.argv[1:]))
