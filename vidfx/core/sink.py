"""Sink: where the frames of one graph output go (a file writer, a list in memory)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib.metadata import entry_points
from typing import Any, Protocol

from .errors import GraphError
from .frame import ClipInfo, Frame
from .params import Param

SINK_ENTRY_POINT_GROUP = "vidfx.sinks"


class Sink:
    """Receives one output's frames in order.

    ``open`` is called once with the output's ClipInfo, ``write`` for each frame, then
    exactly one of ``close`` (finish: a file writer renames its temporary file into place)
    or ``abort`` (the run failed or was interrupted: nothing that looks finished is left).
    """

    def open(self, info: ClipInfo) -> None:
        """Prepare to receive frames described by ``info``."""

    def write(self, frame: Frame) -> None:
        """Take one frame."""
        raise NotImplementedError

    def close(self) -> None:
        """Finish successfully."""

    def abort(self) -> None:
        """Give up; remove partial output."""


class ListSink(Sink):
    """Collects frames in memory (the Python API's single-node use)."""

    def __init__(self) -> None:
        self.info: ClipInfo | None = None
        self.frames: list[Frame] = []

    def open(self, info: ClipInfo) -> None:
        self.info = info

    def write(self, frame: Frame) -> None:
        _ = frame.data  # materialise: the caller wants pixels
        self.frames.append(frame)


class FileSinks(Protocol):
    """Makes the sink for a graph output that names a file; installed as the ``file`` entry
    point of the ``vidfx.sinks`` group (vidfx's own is ``vidfx.io.writer.FILE_SINKS``)."""

    params: Sequence[Param]  # the output options a graph may give, e.g. codec

    def __call__(self, path: str, **options: Any) -> Sink:
        """The sink that writes ``path`` with these options (validated against ``params``)."""
        ...

    def check(self, path: str, info: ClipInfo, **options: Any) -> None:
        """Raise the errors ``__call__(path, **options).open(info)`` would, writing nothing."""
        ...


@cache
def file_sinks() -> FileSinks:
    """The installed maker of file sinks (core knows no writer itself)."""
    for ep in entry_points(group=SINK_ENTRY_POINT_GROUP, name="file"):
        maker: FileSinks = ep.load()
        return maker
    raise GraphError("no file writer is installed (entry point vidfx.sinks: file); is vidfx installed?")
