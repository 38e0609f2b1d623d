"""The ``read`` node: a video file or an image sequence as a graph source."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch

from vidfx.core.errors import MediaError
from vidfx.core.frame import ClipInfo, Frame
from vidfx.core.node import SourceNode
from vidfx.core.params import Param

from .image_seq import GAP_MODES, ImageSequenceDecoder, is_image_input, parse_fps
from .video_reader import VideoDecoder


class Read(SourceNode):
    """Reads a video file (any FFmpeg format) or an image sequence (``%04d`` pattern or a
    folder of PNG/TIFF/EXR/DPX). Frames are decoded one by one, upright, with source timing.

    Image sequences keep their frame numbers (``ClipInfo.first_number``, each frame's
    ``meta["frame_number"]``); ``gaps`` says what a missing number becomes. Damaged data the
    decoder conceals is reported as a warning when the reader closes, or raised as a
    MediaError with ``strict``.
    """

    type_name = "read"
    description = (
        "Read a video file or an image sequence (PNG/TIFF/EXR/DPX, '%04d' pattern or folder). "
        "Streams; applies rotation; keeps timestamps, frame numbers, timecode, colour tags, bit depth and audio."
    )
    params = (
        Param("path", "str", required=True, doc="Video file, image pattern (shot_%04d.exr) or folder."),
        Param(
            "fps",
            "str",
            "auto",
            doc="Frame rate of an image sequence (25, 24000/1001, 29.97); auto: the rate its DPX/EXR "
            "headers state, else 25.",
        ),
        Param("threads", "int", 0, min=0, max=256, doc="Decoder threads (0: automatic)."),
        Param("audio", "bool", True, doc="Pass the file's audio on to outputs."),
        Param(
            "gaps",
            "choice",
            "error",
            doc="A missing image in a numbered sequence: error, hold (repeat the frame before) or black.",
            choices=GAP_MODES,
        ),
        Param("strict", "bool", False, doc="Damaged data the decoder would conceal is an error, not a warning."),
        Param(
            "colourspace",
            "str",
            "",
            doc="The OpenColorIO colour space the pictures are in (e.g. ARRI LogC4, ACEScg); "
            "ocio nodes and outputs with a colourspace convert from it.",
        ),
    )

    def __init__(self, name: str | None = None, **values: Any):
        super().__init__(name, **values)
        self.decoder: ImageSequenceDecoder | VideoDecoder | None = None

    def configure(self, inputs: list[ClipInfo], device: torch.device) -> ClipInfo:
        """Open the file (MediaError naming it if that fails) and describe it."""
        self.close()  # configured again: start from a fresh file handle
        path = os.path.expanduser(self.p.path)
        decoder: ImageSequenceDecoder | VideoDecoder
        if is_image_input(path):
            fps = None if self.p.fps == "auto" else parse_fps(self.p.fps)
            decoder = ImageSequenceDecoder(path, fps, self.p.gaps)
        else:
            decoder = VideoDecoder(path, self.p.threads, self.p.strict)
        self.decoder = decoder
        info = decoder.open()
        if not self.p.audio:
            info = info.replace(audio=None)
        if self.p.colourspace:
            info = info.replace(colour=dataclasses.replace(info.colour, space=self.p.colourspace))
        self.info = info
        return info

    def files_read(self) -> list[str]:
        """The file (or image pattern) this reader reads: outputs must not overwrite it."""
        return [self.p.path]

    def read(self, n: int) -> Frame:
        """Frame ``n`` (lazy pixels); EndOfStream past the last decodable frame."""
        if self.decoder is None:
            raise MediaError(f"{self.name}: read before configure")
        return self.decoder.get(n)

    def close(self) -> None:
        """Close the file; report damaged data met while decoding (once per opening)."""
        decoder = self.decoder
        if isinstance(decoder, VideoDecoder):
            self._report_damage(decoder)
        if decoder is not None:
            decoder.close()

    def _report_damage(self, decoder: VideoDecoder) -> None:
        damage = decoder.damage
        if damage:
            count = len(damage)
            self.warn(
                f"{count} frame{'s' if count > 1 else ''} had damaged data and "
                f"{'were' if count > 1 else 'was'} concealed (first at frame {min(damage)})"
            )
            decoder.damage = []
        if decoder.cut_short_at is not None:
            self.warn(f"the file's data could not be read after frame {decoder.cut_short_at} (damaged or cut off)")
            decoder.cut_short_at = None


def open_source(path: str | os.PathLike[str], **params: Any) -> Read:
    """A configured ``read`` node for ``path`` (params: fps, threads, audio)."""
    node = Read(path=os.fspath(path), **params)
    node.configure([], torch.device("cpu"))
    return node
