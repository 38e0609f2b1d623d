"""Reader -> writer with no graph: the plain pass-through copy (tests, benchmarks, scripts)."""

from __future__ import annotations

import os
from typing import Any

from vidfx.core.frame import EndOfStream
from vidfx.core.sink import Sink

from .nodes import open_source
from .writer import make_sink


def copy_media(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], touch_pixels: bool = False, **options: Any
) -> tuple[int, Sink]:
    """Read every frame of ``src`` and write it to ``dst`` (``options``: WRITER_PARAMS).

    ``touch_pixels`` makes each frame's tensor before writing, so the writer takes its
    conversion path instead of re-encoding the decoder's frames. On any failure the
    partial output is removed and the error re-raised. Returns (frames written, sink).
    """
    reader = open_source(os.fspath(src))
    sink = make_sink(os.fspath(dst), **options)
    sink.open(reader.info)
    n = 0
    try:
        while True:
            frame = reader.read(n)
            if touch_pixels:
                _ = frame.data  # make the tensor now, so the writer converts it
            sink.write(frame)
            n += 1
    except EndOfStream as end:
        if end.length != n:
            sink.abort()
            raise RuntimeError(f"{src}: reader ended at {end.length} frames after yielding {n}") from None
    except BaseException:
        sink.abort()
        raise
    finally:
        reader.close()
    sink.close()
    return n, sink
