"""Whole-clip decoding to numpy for tools (training, evaluation, benchmarks).

The engine decodes through ``Read`` (exact timestamps, colour tags, bit depth, lazy pixels).
Tools that just want a clip's pictures as 8-bit RGB arrays use :func:`rgb_frames` instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from fractions import Fraction

import numpy as np

from vidfx.core.errors import MediaError

from .probe import open_input, stream_rate


def rgb_frames(path: str | os.PathLike[str], max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Yield the first video stream's frames, in order, as (H, W, 3) uint8 RGB arrays.

    Stops after ``max_frames`` frames when given. A file that cannot be opened or has no
    video stream is a ``MediaError`` naming it.
    """
    with open_input(path) as container:
        if not container.streams.video:
            raise MediaError(f"{os.fspath(path)}: no video stream")
        for count, frame in enumerate(container.decode(video=0), start=1):
            yield frame.to_ndarray(format="rgb24")
            if max_frames and count >= max_frames:
                return


def frame_rate(path: str | os.PathLike[str]) -> Fraction:
    """The first video stream's frame rate as an exact fraction, by the same rule as
    :func:`~vidfx.io.probe.probe` (average, else guessed, else base rate; none is a MediaError)."""
    with open_input(path) as container:
        if not container.streams.video:
            raise MediaError(f"{os.fspath(path)}: no video stream")
        return stream_rate(container.streams.video[0], path)
