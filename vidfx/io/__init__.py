"""Media I/O: probing, decoding (video files, image sequences) and encoding (PyAV/FFmpeg).

Public API: ``probe(path) -> ClipInfo``, ``open_source(path, **params) -> Read`` (a
configured SourceNode), ``make_sink(path, **options) -> Sink``, ``WRITER_PARAMS`` and
``copy_media(src, dst, **options)`` (reader -> writer without a graph).
"""

from .copy import copy_media
from .nodes import Read, open_source
from .probe import probe
from .writer import WRITER_PARAMS, VideoWriter, make_sink, writer_options

__all__ = ["probe", "open_source", "make_sink", "WRITER_PARAMS", "Read", "VideoWriter", "writer_options", "copy_media"]
