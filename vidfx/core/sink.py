"""Sink: where the frames of one graph output go (a file writer, a list in memory)."""
from __future__ import annotations

from .frame import ClipInfo, Frame


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
        frame.data  # materialise: the caller wants pixels
        self.frames.append(frame)
