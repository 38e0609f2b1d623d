"""The ``translate`` node: one-step image-to-image translation of video (day -> dusk, dusk ->
day; an edges -> frame model through ``weights``), flicker-free.

A sequence node: the engine hands it overlapping chunks of frames; inside a chunk each frame's
translation is blended with the previous frame's, moved along the optical flow
(:mod:`vidfx.translate.pipeline`), and chunk overlaps are cross-faded, so memory is flat in
clip length and chunks may render anywhere (Ray).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from vidfx.core.errors import ParamError
from vidfx.core.frame import ClipInfo, Frame
from vidfx.core.node import HostHints, SequenceNode
from vidfx.core.params import Param

from .pipeline import MODELS, TranslatePipeline, TranslateSettings


class TranslateNode(SequenceNode):
    """img2img-turbo-style translation on vidfx's one-step diffusion generator."""

    type_name = "translate"
    description = (
        "Translate the look of a shot with a one-step generator: day -> dusk (`model: day2dusk`) "
        "or dusk -> day. Its change is computed on a small canvas and applied to "
        "the full-resolution frame (detail kept); `temporal` blends in the previous frame's "
        "change moved along the optical flow (no shimmer)."
    )
    host = HostHints(scale_mode="full")
    params = (
        Param("model", "str", "day2dusk", f"what to translate: {', '.join(MODELS)}"),
        Param("strength", "float", 1.0, "0 = the input, 1 = the full translation", min=0, max=2),
        Param("temporal", "float", 0.5, "weight of the motion-compensated previous frame (0 = off)", min=0, max=0.95),
        Param("work_size", "int", 0, "long side of the network's canvas (0 = as trained)", min=0, max=2048),
        Param("weights", "str", "", "weights file instead of the shipped model"),
        Param("chunk", "int", 24, "frames processed together", min=2, max=256),
        Param("overlap", "int", 4, "frames shared by neighbouring chunks (cross-faded)", min=0, max=64),
    )

    def __init__(self, name: str | None = None, **values: Any):
        super().__init__(name, **values)
        if self.p.model not in MODELS:
            raise ParamError(f"{self.name}.model: unknown model {self.p.model!r}; valid: {', '.join(MODELS)}")
        if self.p.overlap >= self.p.chunk:
            raise ParamError(f"{self.name}.overlap: must be smaller than chunk ({self.p.chunk})")
        self.chunk_length = self.p.chunk
        self.chunk_overlap = self.p.overlap
        self.pipeline: TranslatePipeline | None = None

    def configure(self, inputs: list[ClipInfo], device: torch.device) -> ClipInfo:
        settings = TranslateSettings(
            model=self.p.model,
            weights=self.p.weights,
            strength=self.p.strength,
            temporal=self.p.temporal,
            work_size=self.p.work_size,
        )
        self.pipeline = TranslatePipeline(settings, device)
        return inputs[0]

    def render_chunk(self, frames: list[Frame], *others: list[Frame]) -> list[torch.Tensor]:
        if self.pipeline is None:
            raise RuntimeError("translate: configure() was not called")
        data = torch.stack([f.data.float() for f in frames])
        c = data.shape[1]
        rgb = data.expand(-1, 3, -1, -1) if c == 1 else data[:, :3]
        self.pipeline.reset()  # a chunk is rendered on its own (overlaps are cross-faded)
        out_np = self.pipeline.run(rgb.clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy())
        out = torch.from_numpy(np.ascontiguousarray(out_np)).permute(0, 3, 1, 2)
        if c == 1:
            out = out.mean(1, keepdim=True)
        elif c == 4:
            out = torch.cat([out, data[:, 3:4].cpu()], dim=1)
        return list(out)

    def close(self) -> None:
        self.pipeline = None
