"""Frame and ClipInfo: what flows through the graph, and what describes a stream."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from .timecode import Timecode

if TYPE_CHECKING:  # only for annotations: probing a file needs no torch
    import torch


@dataclass(frozen=True)
class ColourTags:
    """Colour description of a stream, with FFmpeg's names (``bt709``, ``bt2020nc``, ``tv``/``pc``...).

    ``None`` means unspecified; writers then leave the tag unset rather than guessing.
    """

    primaries: str | None = None
    transfer: str | None = None
    matrix: str | None = None
    range: str | None = None  # "tv" (limited) or "pc" (full)
    space: str | None = None  # an OpenColorIO colour space name, where the graph declares one


@dataclass(frozen=True)
class AudioRef:
    """Where a clip's audio lives, and which part of it belongs to the clip.

    Nodes never touch samples; they only move the window. ``start`` is in seconds on the
    source file's audio timeline, ``duration`` in seconds (``None``: to the end).
    ``copyable`` is False once the window no longer starts at the source's start, so the
    writer knows it must re-encode to keep sample-accurate sync.
    """

    path: str
    stream_index: int
    codec: str
    sample_rate: int
    channels: int
    start: float = 0.0
    duration: float | None = None
    copyable: bool = True


@dataclass(frozen=True)
class ClipInfo:
    """Description of one stream of frames: size, exact rate, length, colour, depth, audio.

    ``fps`` is an exact ``Fraction`` (24000/1001 stays 24000/1001). ``time_base`` is the
    unit of ``Frame.pts``. ``num_frames`` is the container's count; a reader that finds
    fewer frames when it decodes corrects it and the engine follows. ``timecode`` is the
    source timecode of frame 0 and ``first_number`` an image sequence's number of frame 0;
    nodes that move the timeline (trim) move both.
    """

    width: int
    height: int
    fps: Fraction
    num_frames: int
    channels: int = 3  # 1 (mask/grey), 3 (RGB) or 4 (RGBA)
    bit_depth: int = 8
    colour: ColourTags = ColourTags()
    time_base: Fraction | None = None
    audio: AudioRef | None = None
    source: str | None = None
    pix_fmt: str | None = None
    codec: str | None = None
    rotation: int = 0
    sample_aspect_ratio: Fraction | None = None
    timecode: Timecode | None = None  # of frame 0
    first_number: int | None = None  # an image sequence's frame number of frame 0 (e.g. 1001)

    def replace(self, **changes: Any) -> ClipInfo:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    @property
    def duration(self) -> float:
        """Nominal duration in seconds (frame count / rate)."""
        return float(self.num_frames / self.fps) if self.fps else 0.0

    @property
    def frame_time_base(self) -> Fraction:
        """The time base to use for frames that have no container pts."""
        return self.time_base or 1 / self.fps


class Frame:
    """One picture: a float32 tensor (C, H, W), RGB/RGBA/mask, nominal range 0..1.

    ``pts`` is in the clip's ``time_base``; nodes that keep timing pass it on unchanged.
    The pixels may be produced lazily (``load``): a reader hands out frames whose tensor is
    only made when a node asks for ``data``, so a pass-through graph never converts pixels.
    ``native`` may hold the decoder's own frame object for that fast path.
    """

    __slots__ = ("_data", "_load", "index", "pts", "meta", "native")

    def __init__(
        self,
        data: torch.Tensor | None = None,
        *,
        index: int,
        pts: int | None = None,
        meta: dict | None = None,
        load: Callable[[], torch.Tensor] | None = None,
        native: Any = None,
    ):
        if data is None and load is None:
            raise ValueError("Frame needs data or a loader")
        self._data = data
        self._load = load
        self.index = index
        self.pts = pts
        self.meta = meta if meta is not None else {}
        self.native = native

    @property
    def data(self) -> torch.Tensor:
        """The pixels as a (C, H, W) float32 tensor."""
        if self._data is None:
            assert self._load is not None  # __init__ requires data or a loader
            self._data = self._load()
            self._load = None
        return self._data

    @property
    def loaded(self) -> bool:
        """Whether the tensor has been made already."""
        return self._data is not None

    def with_data(self, data: torch.Tensor, **changes: Any) -> Frame:
        """A new frame with other pixels and the same index, pts and metadata (unless changed)."""
        return Frame(
            data,
            index=changes.get("index", self.index),
            pts=changes.get("pts", self.pts),
            meta=dict(changes.get("meta", self.meta)),
        )

    def __repr__(self) -> str:
        shape = tuple(self._data.shape) if self._data is not None else "lazy"
        return f"Frame(index={self.index}, pts={self.pts}, shape={shape})"


class EndOfStream(Exception):
    """Raised by a reader asked for a frame past the last one it could decode."""

    def __init__(self, length: int):
        super().__init__(f"stream ends after {length} frames")
        self.length = length
