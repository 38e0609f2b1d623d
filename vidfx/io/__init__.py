"""Media I/O: probing, decoding (video files, image sequences) and encoding (PyAV/FFmpeg).

Public API: ``probe(path) -> ClipInfo``, ``open_source(path, **params) -> Read`` (a
configured SourceNode), ``make_sink(path, **options) -> Sink``, ``WRITER_PARAMS`` and
``copy_media(src, dst, **options)`` (reader -> writer without a graph). The names are
imported on first use, so probing a file does not load torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vidfx.core.lazy import lazy_attributes

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


__getattr__ = lazy_attributes(__name__, _EXPORTS)


if TYPE_CHECKING:
    from .copy import copy_media
    from .nodes import Read, open_source
    from .writer import WRITER_PARAMS, VideoWriter, make_sink, writer_options
