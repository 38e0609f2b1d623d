"""The render server the OFX plugin talks to (``vidfx serve``); protocol in docs/ofx.md."""


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``vidfx serve``."""
    from .server import main as serve_main

    return serve_main(argv)
