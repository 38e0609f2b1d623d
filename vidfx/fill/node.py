"""The ``fill`` node: remove what a mask covers (object removal, clean plates).

The mask is a second input clip (its alpha, or its grey level: e.g. a ``segment`` matte),
and/or shapes in the graph (boxes and polygons with keyframes). The node is a sequence
node: the engine hands it overlapping chunks of frames (the same frames of the mask clip
come along), so propagation sees up to ``window`` frames each way inside a chunk, memory is
flat in clip length, and chunk overlaps are cross-faded.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import yaml

from vidfx.core.errors import GraphError, ParamError
from vidfx.core.frame import ClipInfo, Frame
from vidfx.core.node import HostHints, SequenceNode
from vidfx.core.params import Param

from .masks import Shape, check_mask_clip, mask_from_frame, parse_shapes, rasterize_shapes, refine_mask
from .pipeline import FillPipeline, FillSettings
from .propagate import PropagationConfig


class FillNode(SequenceNode):
    """Object removal: flow propagation of real background plus lazy diffusion generation."""

    type_name = "fill"
    description = (
        "Remove what a mask covers: background propagated along optical flow from up to "
        "`window` frames each way; what no frame shows is generated (LazyDiffusion-style "
        "model, fixed noise, carried along by flow). Mask: a second input clip (alpha or "
        "grey) and/or keyframed `shapes`."
    )
    num_inputs = -1  # the source, and optionally the mask clip
    host = HostHints(
        scale_mode="full", pixel_params={"dilate": "xy", "feather": "xy"}, mask_input="Mask", mask_switch="use_mask"
    )
    params = (
        Param(
            "shapes",
            "str",
            "",
            "boxes/polygons to remove, as YAML: [{type: box, keys: {0: [x0, y0, x1, y1], 30: [...]}}, "
            "{type: polygon, keys: {0: [[x, y], ...]}}]; pixel coordinates of the full frame, frame "
            "numbers of the input (in a host: from the clip's first frame), linear between keyframes",
        ),
        Param("use_mask", "bool", True, "use the mask clip (second input) when one is connected"),
        Param("dilate", "float", 4.0, "grow the mask by this many pixels (covers edges and shadows)", min=0, max=200),
        Param("feather", "float", 3.0, "soft edge outside the mask, in pixels", min=0, max=200),
        Param("invert", "bool", False, "remove what the mask does not cover"),
        Param("window", "int", 12, "frames searched each way for background", min=0, max=64),
        Param("generate", "bool", True, "generate what no frame shows (off: Telea inpainting)"),
        Param(
            "steps",
            "int",
            0,
            "generator steps: 0 = the distilled one-step generator (fast), N = the diffusion teacher with N steps",
            min=0,
            max=64,
        ),
        Param("seed", "int", 0, "noise seed of the generator (fixed for the whole shot)", min=0),
        Param("work_size", "int", 320, "long side of the generator's canvas in pixels", min=32, max=2048),
        Param("weights", "str", "", "weights file of the generator (empty = the shipped one for `steps`)"),
        Param("chunk", "int", 24, "frames processed together", min=2, max=256),
        Param("overlap", "int", 6, "frames shared by neighbouring chunks (cross-faded)", min=0, max=64),
    )

    def __init__(self, name: str | None = None, **values: Any):
        shapes = values.get("shapes")
        if isinstance(shapes, (list, tuple, dict)):  # the Python API takes the structure itself
            values["shapes"] = yaml.safe_dump(shapes, default_flow_style=True)
        super().__init__(name, **values)
        if self.p.overlap >= self.p.chunk:
            raise ParamError(f"{self.name}.overlap: must be smaller than chunk ({self.p.chunk})")
        text = self.p.shapes.strip()
        try:
            data = yaml.safe_load(text) if text else []
        except yaml.YAMLError as exc:
            raise ParamError(f"{self.name}.shapes: not valid YAML: {str(exc).splitlines()[0]}") from None
        self.shapes: list[Shape] = parse_shapes(data or [], f"{self.name}.shapes")
        self.chunk_length = self.p.chunk
        self.chunk_overlap = self.p.overlap
        self.pipeline: FillPipeline | None = None
        self.with_mask_clip = False
        self.info: ClipInfo | None = None

    def configure(self, inputs: list[ClipInfo], device: torch.device) -> ClipInfo:
        if len(inputs) not in (1, 2):
            raise GraphError(f"{self.name}: fill takes the source and an optional mask clip, got {len(inputs)} inputs")
        info = inputs[0]
        self.with_mask_clip = len(inputs) == 2 and self.p.use_mask
        if self.with_mask_clip:
            check_mask_clip(info, inputs[1], self.name)
        elif not self.shapes:
            raise GraphError(f"{self.name}: nothing to remove: connect a mask clip (second input) or give `shapes`")
        settings = FillSettings(
            work_size=self.p.work_size,
            steps=self.p.steps,
            seed=self.p.seed,
            generate=self.p.generate,
            weights=self.p.weights,
            propagation=PropagationConfig(window=self.p.window),
        )
        self.device = device
        self.pipeline = FillPipeline(settings, device)
        self.info = info
        return info

    def masks(self, frames: list[Frame], mask_frames: list[Frame] | None) -> tuple[np.ndarray, np.ndarray]:
        """The hard holes and soft compositing weights of a run of frames.

        Shape: output bool :math:`(T, H, W)` and float32 :math:`(T, H, W)`.
        """
        h, w = frames[0].data.shape[-2:]
        hard, soft = [], []
        for k, frame in enumerate(frames):
            m = np.zeros((h, w), np.float32)
            if mask_frames is not None:
                m = mask_from_frame(mask_frames[k].data.float()).cpu().numpy().astype(np.float32)
            if self.shapes:
                m = np.maximum(m, rasterize_shapes(self.shapes, frame.index, w, h))
            hd, sf = refine_mask(m, self.p.dilate, self.p.feather, self.p.invert)
            hard.append(hd)
            soft.append(sf)
        return np.stack(hard), np.stack(soft)

    def render_chunk(self, frames: list[Frame], *others: list[Frame]) -> list[torch.Tensor]:
        if self.pipeline is None:
            raise RuntimeError("fill: configure() was not called")
        mask_frames = others[0] if self.with_mask_clip and others else None
        if mask_frames is not None:
            for frame, mask in zip(frames, mask_frames, strict=True):
                if mask.index != frame.index:  # the engine repeats a clip's last frame past its end
                    raise GraphError(
                        f"{self.name}: the mask clip has no frame {frame.index} (it ends at frame {mask.index}); "
                        "the mask clip must be as long as the source"
                    )
        hard, soft = self.masks(frames, mask_frames)
        if not hard.any():
            return [f.data for f in frames]  # nothing to remove: the frames as they came
        data = torch.stack([f.data.float() for f in frames])
        c = data.shape[1]
        rgb = data.expand(-1, 3, -1, -1) if c == 1 else data[:, :3]
        rgb_np = rgb.clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
        holes = soft > 0  # the whole soft edge is filled, then blended with the soft weights
        filled = self.pipeline.run(rgb_np, holes)
        weight = torch.from_numpy(soft)[:, None]
        out_rgb = rgb.cpu() * (1 - weight) + torch.from_numpy(filled).permute(0, 3, 1, 2) * weight
        if c == 1:
            out = out_rgb.mean(1, keepdim=True)
        elif c == 4:
            out = torch.cat([out_rgb, data[:, 3:4].cpu()], dim=1)
        else:
            out = out_rgb
        untouched = ~holes.reshape(len(frames), -1).any(1)
        return [frames[k].data if untouched[k] else out[k] for k in range(len(frames))]

    def close(self) -> None:
        self.pipeline = None
