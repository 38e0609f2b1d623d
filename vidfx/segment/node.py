"""The ``segment`` node: CamVid classes or a person matte, smoothed over time.

Outputs (param ``output``):
- ``overlay``: RGB preview, the class colours blended over the picture;
- ``labels``: one channel, class index / 255 (an 8-bit PNG stores the index itself);
- ``matte``: one channel, alpha of the chosen ``classes``;
- ``alpha``: RGBA, the input picture with that matte as alpha (for ProRes 4444, EXR, PNG).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from vidfx.core.errors import MediaError, ParamError
from vidfx.core.frame import ClipInfo, Frame
from vidfx.core.node import HostHints, Node
from vidfx.core.params import Param
from vidfx.ops.colour import grey_u8

from .data import CLASS_NAMES, PALETTE
from .model import load_model_shared, predict_lowres, weights_scale
from .smoothing import TemporalSmoother

PERSON_CLASSES = ("background", "person")
DEFAULT_MATTE_CLASSES = ("car", "pedestrian", "bicyclist")  # camvid matte/alpha without classes
PERSON_PALETTE = np.array([[0, 0, 0], [0, 200, 80]], dtype=np.uint8)
OUTPUTS = ("overlay", "labels", "matte", "alpha")


def as_rgb(data: torch.Tensor) -> torch.Tensor:
    """(3, H, W) RGB from a 1-, 3- or 4-channel frame (grey is repeated, alpha dropped)."""
    if data.shape[0] == 1:
        return data.expand(3, -1, -1)
    return data[:3]


class SegmentNode(Node):
    """Per-frame semantic segmentation (CamVid classes) or person matte, with flow-guided
    temporal smoothing; outputs a colour overlay, a class-index map, or an alpha matte."""

    type_name = "segment"
    description = "Semantic segmentation (CamVid road-scene classes) or person matte, stable over time"
    # In an editor, segment is mostly used to key people out, as an alpha channel.
    # Models see the picture at a processing scale of the input: at a host's proxy scale the
    # bridge runs it at full resolution and resamples the result.
    host = HostHints(defaults={"mode": "person", "output": "alpha"}, scale_mode="full")
    params = (
        Param(
            "mode",
            "choice",
            "camvid",
            "camvid: 11 road-scene classes; person: MediaPipe selfie matte",
            choices=("camvid", "person"),
        ),
        Param(
            "output",
            "choice",
            "overlay",
            "overlay (RGB preview), labels (class index/255), matte (1 ch), alpha (RGBA)",
            choices=OUTPUTS,
        ),
        Param(
            "classes",
            "list",
            None,
            "classes that make the matte, e.g. [sky] or [car, pedestrian]",
            choices=CLASS_NAMES + ("person",),
        ),
        Param("invert", "bool", False, "invert the matte (everything but the chosen classes)"),
        Param("soft", "bool", False, "matte = class probability instead of a hard mask"),
        Param("feather", "float", 0.0, "Gaussian feather of the matte edges, in pixels (sigma)", min=0, max=100),
        Param("smoothing", "float", 0.6, "weight of the motion-compensated history (0 = per-frame)", min=0, max=0.95),
        Param("warmup", "int", 3, "previous frames replayed when frames are not asked for in order", min=0, max=16),
        Param("scale", "float", 0.0, "processing scale (0 = the model's default)", min=0, max=2),
        Param("opacity", "float", 0.5, "overlay colour opacity", min=0, max=1),
        Param("weights", "str", None, "CamVid weights file (default: the shipped ones)"),
    )

    def __init__(self, name: str | None = None, **values):
        classes = values.get("classes")
        if isinstance(classes, (list, tuple)):
            values["classes"] = [str(c).strip().lower() for c in classes]
        elif isinstance(classes, str):
            values["classes"] = [c.strip().lower() for c in classes.strip("[]").split(",") if c.strip()]
        super().__init__(name, **values)
        # the smoothed history reaches back to the first frame: a segment rendered alone
        # would start without it, so a smoothed matte is rendered in one piece
        self.splittable = self.p.smoothing <= 0
        self.model = None
        self.person = None
        self.smoother: TemporalSmoother | None = None
        self._last_index: int | None = None

    # --- configuration -----------------------------------------------------------------
    def configure(self, inputs: list[ClipInfo], device: torch.device) -> ClipInfo:
        info = inputs[0]
        if info.channels not in (1, 3, 4):
            raise MediaError(f"{self.name}: input has {info.channels} channels; expected 1 (grey), 3 (RGB) or 4 (RGBA)")
        if info.width < 1 or info.height < 1:
            raise MediaError(f"{self.name}: input has an empty picture ({info.width}x{info.height})")
        self.device = device
        p = self.p
        if p.mode == "person":
            names = PERSON_CLASSES
            classes = p.classes or ["person"]
            bad = [c for c in classes if c not in names]
            if bad:
                raise ParamError(
                    f"{self.name}.classes: unknown value(s) {', '.join(bad)} in person mode; valid: {', '.join(names)}"
                )
            from .person import PersonSegmenter

            self.person = PersonSegmenter()
            self.palette = PERSON_PALETTE
            self.proc_scale = p.scale or 0.5
        else:
            names = CLASS_NAMES
            classes = p.classes or []
            bad = [c for c in classes if c not in names]
            if bad:
                raise ParamError(f"{self.name}.classes: unknown value(s) {', '.join(bad)}; valid: {', '.join(names)}")
            if p.output in ("matte", "alpha") and not classes:
                classes = list(DEFAULT_MATTE_CLASSES)  # the moving things of a road scene
                self.warn(f"no classes given for output {p.output!r}: using {', '.join(classes)}")
            self.model = load_model_shared(p.weights, device)
            self.palette = PALETTE
            self.proc_scale = p.scale or weights_scale(self.model)
        self.names = names
        self.class_ids = [names.index(c) for c in classes]
        self.smoother = TemporalSmoother(p.smoothing)
        self._last_index = None
        channels = {"overlay": 3, "labels": 1, "matte": 1, "alpha": 4}[p.output]
        self.info = info.replace(channels=channels)
        return self.info

    def frames_needed(self, n: int) -> list[list[int]]:
        if self.p.smoothing <= 0 or self.p.warmup == 0:
            return [[n]]
        return [list(range(n - self.p.warmup, n + 1))]

    def close(self) -> None:
        if self.person is not None:
            self.person.close()
            self.person = None
        self.model = None

    # --- per frame ---------------------------------------------------------------------
    def _scores(self, rgb: torch.Tensor) -> torch.Tensor:
        """(K, h, w) class scores at the processing size."""
        h, w = rgb.shape[-2:]
        if self.person is not None:
            logits = self.person.logits(rgb.cpu())
            sh, sw = max(1, round(h * self.proc_scale)), max(1, round(w * self.proc_scale))
            if (sh, sw) != (h, w):
                logits = F.interpolate(logits[None], size=(sh, sw), mode="bilinear", align_corners=False)[0]
            return logits
        x = rgb.to(self.device, torch.float32)[None]
        with torch.no_grad(), torch.autocast("cuda", torch.float16, enabled=self.device.type == "cuda"):
            return predict_lowres(self.model, x, self.proc_scale)[0].float()

    def _smoothed(self, frame: Frame) -> torch.Tensor:
        rgb = as_rgb(frame.data)
        scores = self._scores(rgb)
        small = F.interpolate(
            rgb[None].float().cpu(),
            size=scores.shape[-2:],
            mode="bilinear",
            align_corners=False,
            antialias=scores.shape[-1] < rgb.shape[-1],
        )[0]
        return self.smoother.step(scores.cpu(), grey_u8(small))

    def render(self, n: int, inputs: list[list[Frame]]) -> Frame:
        window = inputs[0]
        current = window[-1]
        if self._last_index is not None and self._last_index == current.index - 1:
            logp = self._smoothed(current)  # in order: carry the history on
        else:
            # Out of order (first frame, a seek, parallel rendering): replay the window.
            self.smoother.reset()
            seen = None
            for frame in window:
                if frame.index == seen:
                    continue  # the engine repeats the edge frame near the start
                seen = frame.index
                logp = self._smoothed(frame)
        self._last_index = current.index
        data = current.data
        h, w = data.shape[-2:]
        logp = F.interpolate(logp[None], size=(h, w), mode="bilinear", align_corners=False)[0]
        return current.with_data(self._make_output(data, logp))

    def _make_output(self, data: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
        p = self.p
        labels = logp.argmax(0)
        if p.output == "labels":
            return (labels.float() / 255.0)[None]
        rgb = as_rgb(data).float().cpu()
        if p.output == "overlay":
            colours = torch.from_numpy(self.palette).float().div(255)[labels].permute(2, 0, 1)
            tint = torch.ones_like(labels, dtype=torch.bool)
            if self.class_ids:
                tint = torch.isin(labels, torch.tensor(self.class_ids))
            if self.person is not None and not p.classes:
                tint = labels == 1
            a = p.opacity * tint.float()[None]
            return rgb * (1 - a) + colours * a
        matte = self._matte(logp, labels)
        if p.output == "matte":
            return matte[None]
        return torch.cat([rgb, matte[None]], 0)

    def _matte(self, logp: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        ids = torch.tensor(self.class_ids)
        if self.p.soft:
            matte = logp.softmax(0)[ids].sum(0)
        else:
            matte = torch.isin(labels, ids).float()
        if self.p.invert:
            matte = 1 - matte
        if self.p.feather > 0:
            m = matte.numpy().astype(np.float32)
            matte = torch.from_numpy(cv2.GaussianBlur(m, (0, 0), self.p.feather, borderType=cv2.BORDER_REPLICATE))
        return matte.clamp(0, 1).contiguous()
