"""Translate runs of consecutive frames: the network on a small canvas, its residual upsampled
onto the full-resolution frame, and flow-guided temporal smoothing.

Per frame: the frame is scaled to ``work_size`` on its long side (area) and padded to a
multiple of the token size, and the network reads it. An ``affine`` model gives a field of
local colour transforms: interpolated (bilinear) to the full-resolution frame and applied to
it there, so the change follows the frame's own edges at any resolution. For a ``residual``
model the *change* it made (output minus input, mostly light and colour, which is smooth) is
upsampled (bicubic) and added to the full-resolution frame. Either way ``strength`` scales the
change and the frame's own detail is kept. Temporal smoothing: the previous frame's change
(its colour-transform field, for an affine model) is warped into this frame along the DIS flow
(the shared :mod:`vidfx.ops.flow`) and, where the forward-backward flows agree, blended in
with weight ``temporal``; a static scene therefore cannot shimmer, and the blend follows the
motion instead of smearing it. An edge model (``edges`` task) makes the whole picture: its
output is upsampled as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from vidfx.ops.colour import grey_u8
from vidfx.ops.flow import DISFlow, consistent_mask
from vidfx.ops.warp import backward_warp_np
from vidfx.ops.weights import load_model

from .edges import edge_map
from .model import DIRECTIONS, FAMILY, WORK_SIZE, TranslateNet, build_translate

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
PRETRAINED_WEIGHTS = WEIGHTS_DIR / "day2dusk.pt"  # on the diffusion-pretrained backbone (LoRA)
SCRATCH_WEIGHTS = WEIGHTS_DIR / "day2dusk_scratch.pt"  # the same architecture trained from scratch
# The default is the one model selection preferred on the held-out select frames (CamVid train):
# lower FD to dusk with the segment mIoU within the budget (pretrained 6.53 / 74.6, scratch 7.36 / 75.1).
DEFAULT_WEIGHTS = PRETRAINED_WEIGHTS
EDGES_WEIGHTS = WEIGHTS_DIR / "edges2frame.pt"  # the paired edges -> frame model (pix2pix-Turbo)
MODELS = {"day2dusk": DEFAULT_WEIGHTS, "dusk2day": DEFAULT_WEIGHTS, "edges2frame": EDGES_WEIGHTS}


@dataclass
class TranslateSettings:
    """How :class:`TranslatePipeline` translates.

    ``model``: a key of :data:`MODELS` (day/dusk, either way, or edges -> frame); ``weights``: a
    weights file instead of the shipped one (e.g. :data:`PRETRAINED_WEIGHTS`); ``strength``: 0 = the input, 1 = the full
    translation; ``temporal``: weight of the motion-compensated previous frame (0 = off);
    ``work_size``: long side of the network's canvas in pixels (0 = what the model was trained at).
    """

    model: str = "day2dusk"
    weights: str = ""
    strength: float = 1.0
    temporal: float = 0.5
    work_size: int = 0


class TranslatePipeline:
    """Translates frames in order, keeping the previous frame for temporal smoothing (call
    :meth:`reset` between unrelated runs)."""

    def __init__(
        self,
        settings: TranslateSettings | None = None,
        device: torch.device | str = "cpu",
        net: TranslateNet | None = None,
    ):
        """``net``: a network in memory instead of a weights file (model selection in training)."""
        self.settings = s = settings or TranslateSettings()
        if s.model not in MODELS:
            raise ValueError(f"translate: unknown model {s.model!r}; valid: {', '.join(MODELS)}")
        self.device = torch.device(device)
        meta: dict = {}
        if net is None:
            loaded, meta = load_model(s.weights or MODELS[s.model], FAMILY, build_translate, self.device)
            net = loaded  # type: ignore[assignment]
        assert net is not None
        self.net = net
        self.work_size = s.work_size or int(meta.get("work_size", WORK_SIZE))
        self.direction = DIRECTIONS.index(s.model) if s.model in DIRECTIONS else 0
        self.edges = self.net.cfg.in_channels == 1
        self.affine = self.net.cfg.output == "affine"
        self.flow = DISFlow("medium")
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame (the next frame is translated on its own)."""
        self._prev_grey: np.ndarray | None = None
        self._prev_change: np.ndarray | None = None

    def _canvas(self, frame: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        h, w = frame.shape[:2]
        s = min(1.0, self.work_size / max(h, w))
        sw, sh = max(8, round(w * s)), max(8, round(h * s))
        small = cv2.resize(frame, (sw, sh), interpolation=cv2.INTER_AREA) if (sw, sh) != (w, h) else frame
        p = self.net.cfg.backbone.patch
        small = np.pad(small, ((0, -sh % p), (0, -sw % p), (0, 0)), mode="reflect")
        return small, (sh, sw)

    @torch.no_grad()
    def translate_small(self, small: np.ndarray) -> np.ndarray:
        """The network on one canvas. Shape: :math:`(h, w, 3)` float32 -> same."""
        x = small if not self.edges else edge_map(small)
        t = torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].to(self.device)
        direction = torch.tensor([self.direction], device=self.device)
        return self.net(t, direction)[0].permute(1, 2, 0).cpu().numpy()

    @torch.no_grad()
    def coefficient_field(self, small: np.ndarray) -> np.ndarray:
        """An affine model's colour transforms over one canvas, one per pixel (bilinear between
        the tokens' own). Shape: :math:`(h, w, 3)` float32 -> :math:`(h, w, 12)`."""
        t = torch.from_numpy(np.ascontiguousarray(small)).permute(2, 0, 1)[None].to(self.device)
        direction = torch.tensor([self.direction], device=self.device)
        coeffs = self.net.coefficients(t, direction)
        coeffs = torch.nn.functional.interpolate(coeffs, size=small.shape[:2], mode="bilinear", align_corners=False)
        return coeffs[0].permute(1, 2, 0).cpu().numpy()

    def apply_field(self, field: np.ndarray, frame: np.ndarray) -> np.ndarray:
        """The change a colour-transform field makes to ``frame`` (:meth:`TranslateNet.apply_affine`,
        the field interpolated bilinearly to the frame's size).

        Shape: field :math:`(h, w, 12)`, frame :math:`(H, W, 3)` -> :math:`(H, W, 3)` float32.
        """
        coeffs = torch.from_numpy(np.ascontiguousarray(field)).permute(2, 0, 1)[None]
        image = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None]
        with torch.no_grad():
            change = self.net.apply_affine(coeffs, image) - image
        return change[0].permute(1, 2, 0).numpy()

    def run(self, frames: np.ndarray) -> np.ndarray:
        """Translate consecutive frames.

        Shape:
            - frames: float32 :math:`(T, H, W, 3)` 0..1
            - output: float32 :math:`(T, H, W, 3)` 0..1
        """
        s = self.settings
        out = np.empty_like(np.asarray(frames, np.float32))
        for k, frame in enumerate(np.asarray(frames, np.float32)):
            h, w = frame.shape[:2]
            small, (sh, sw) = self._canvas(frame)
            if self.affine:  # ``change`` is the colour-transform field until it reaches full size
                change = self.coefficient_field(small)[:sh, :sw]
            else:
                change = self.translate_small(small)[:sh, :sw] - (0.5 if self.edges else small[:sh, :sw])
            grey = grey_u8(np.clip(small[:sh, :sw] * 255 + 0.5, 0, 255).astype(np.uint8))
            if s.temporal > 0 and self._prev_grey is not None and self._prev_change is not None:
                back = self.flow(grey, self._prev_grey)  # this frame -> the previous one
                agree = consistent_mask(back, self.flow(self._prev_grey, grey))
                warped = backward_warp_np(self._prev_change, back)
                weight = (s.temporal * agree.astype(np.float32))[..., None]
                change = (1 - weight) * change + weight * warped
            self._prev_grey, self._prev_change = grey, change
            if self.affine:
                change = self.apply_field(change, frame)
            elif (sw, sh) != (w, h):
                change = cv2.resize(change, (w, h), interpolation=cv2.INTER_CUBIC)
            # an edge model makes the whole picture: ``strength`` applies to changes of a frame
            out[k] = np.clip(0.5 + change if self.edges else frame + s.strength * change, 0, 1)
        return out
