"""The OpenFX plugin bundle: C sources (``src/``), their Makefile and the build tooling
(``vidfx ofx build``), shipped inside the vidfx package as ``vidfx.ofx_bridge``."""
