"""Media I/O: probing, decoding (video files, image sequences) and encoding (PyAV/FFmpeg).

Public API: ``probe(path) -> ClipInfo``, ``open_source(path, **params) -> Read`` (a
configured SourceNode), ``make_sink(path, **options) -> Sink``, ``WRITER_PARAMS`` and
``copy_media(src, dst, **options)`` (reader -> writer without a graph). The names are
imported on first use, so probing a file does not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# imported now: the function shares its module's name, which a lazy import would shadow
from .probe import probe

_EXPORTS = {
    "copy_media": "copy",
    "Read": "nodes",
    "open_source": "nodes",
    "WRITER_PARAMS": "writer",
    "VideoWriter": "writer",
    "make_sink": "writer",
    "writer_options": "writer",
}

__all__ = ["WRITER_PARAMS", "Read", "VideoWriter", "copy_media", "make_sink", "open_source", "probe", "writer_options"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vidfx.io' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from .copy import copy_media
    from .nodes import Read, open_source
    from .writer import WRITER_PARAMS, VideoWriter, make_sink, writer_options
