"""Masks for the ``fill`` node: from a mask clip's frames or from keyframed shapes, then refined
into the pixels to replace (``hard``) and the weight to composite the fill with (``soft``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from vidfx.core.errors import GraphError, ParamError
from vidfx.core.frame import ClipInfo
from vidfx.ops.colour import luma

SHAPE_TYPES = ("box", "polygon")
_SHIFT = 4  # fillPoly sub-pixel bits: vertices are placed to 1/16 px


def mask_from_frame(data: torch.Tensor) -> torch.Tensor:
    """The mask carried by one frame of a mask clip: its alpha, unless the frame has none or
    its alpha is 1 everywhere (an opaque picture, e.g. a matte rendered into RGB of an RGBA
    file): then its luma.

    Shape:
        - data: :math:`(C, H, W)`, C in {1, 3, 4}, float, nominal 0..1
        - output: :math:`(H, W)`, float32 in 0..1
    """
    if data.dim() != 3 or data.shape[0] not in (1, 3, 4):
        raise ValueError(f"mask frame must be (C, H, W) with C in 1, 3, 4; got {tuple(data.shape)}")
    channels = data.shape[0]
    if channels == 4 and bool((data[3] < 1.0).any()):
        mask = data[3]
    elif channels in (3, 4):
        mask = luma(data[:3].float())[0]
    else:
        mask = data[0]
    return mask.float().clamp(0.0, 1.0)


@dataclass(frozen=True)
class Shape:
    """One keyframed shape, as a polygon per keyframe (a box is its 4 corners).

    ``frames`` are the keyframe numbers, ascending; ``points[i]`` is the polygon at
    ``frames[i]``, in full-resolution pixel coordinates (OpenCV convention: pixel centres at
    integers, the boundary belongs to the shape).

    Shape:
        - points: :math:`(F, K, 2)` float64, F keyframes of K (x, y) vertices
    """

    kind: str
    frames: tuple[int, ...]
    points: np.ndarray

    def at(self, n: int) -> np.ndarray:
        """The polygon at frame ``n``: linear between the surrounding keyframes, held before the
        first keyframe and after the last.

        Shape:
            - output: :math:`(K, 2)` float64
        """
        frames = self.frames
        if n <= frames[0]:
            return self.points[0].copy()
        if n >= frames[-1]:
            return self.points[-1].copy()
        i = int(np.searchsorted(frames, n, side="right")) - 1
        f0, f1 = frames[i], frames[i + 1]
        t = (n - f0) / (f1 - f0)
        return (1.0 - t) * self.points[i] + t * self.points[i + 1]


def _frame_number(key: Any, where: str) -> int:
    if isinstance(key, bool):
        raise ParamError(f"{where}: keyframe {key!r} is not a frame number")
    if isinstance(key, int):
        number = key
    elif isinstance(key, str):
        try:
            number = int(key.strip())
        except ValueError:
            raise ParamError(f"{where}: keyframe {key!r} is not a frame number") from None
    else:
        raise ParamError(f"{where}: keyframe {key!r} is not a frame number")
    if number < 0:
        raise ParamError(f"{where}: keyframe {number} is negative")
    return number


def _numbers(value: Any, count: int | None, where: str) -> list[float]:
    if not isinstance(value, list | tuple) or (count is not None and len(value) != count):
        need = f"{count} numbers" if count is not None else "numbers"
        raise ParamError(f"{where}: expected a list of {need}, got {value!r}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ParamError(f"{where}: {v!r} is not a number")
        if not math.isfinite(v):
            raise ParamError(f"{where}: {v!r} is not a finite number")
        out.append(float(v))
    return out


def _box_points(value: Any, where: str) -> np.ndarray:
    x0, y0, x1, y1 = _numbers(value, 4, where)
    if x1 <= x0 or y1 <= y0:
        raise ParamError(f"{where}: box [x0, y0, x1, y1] needs x1 > x0 and y1 > y0, got {value!r}")
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def _polygon_points(value: Any, where: str) -> np.ndarray:
    if not isinstance(value, list | tuple) or len(value) < 3:
        raise ParamError(f"{where}: a polygon needs at least 3 [x, y] points")
    return np.array([_numbers(p, 2, where) for p in value], dtype=np.float64)


def parse_shapes(value: Any, owner: str) -> list[Shape]:
    """Validate a ``shapes`` parameter: a list of ``{"type": "box" | "polygon", "keys": {frame: coords}}``.

    A box's coordinates are ``[x0, y0, x1, y1]``, a polygon's ``[[x, y], ...]`` (at least 3
    points, the same count at every keyframe). Frame numbers are ints or strings of ints.
    Anything else raises a one-line ``ParamError`` naming ``owner`` and the shape's index.
    """
    if not isinstance(value, list | tuple):
        raise ParamError(f"{owner}: shapes must be a list of {{type, keys}} objects, got {type(value).__name__}")
    shapes = []
    for index, item in enumerate(value):
        where = f"{owner}: shape {index}"
        if not isinstance(item, dict):
            raise ParamError(f"{where} must be an object with 'type' and 'keys', got {item!r}")
        unknown = set(item) - {"type", "keys"}
        if unknown:
            raise ParamError(f"{where} has unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        kind = item.get("type")
        if kind not in SHAPE_TYPES:
            raise ParamError(f"{where} has unknown type {kind!r} (expected one of {', '.join(SHAPE_TYPES)})")
        keys = item.get("keys")
        if not isinstance(keys, dict) or not keys:
            raise ParamError(f"{where} needs 'keys': a non-empty {{frame: coordinates}} object")
        by_frame: dict[int, np.ndarray] = {}
        for key, coords in keys.items():
            frame = _frame_number(key, where)
            if frame in by_frame:
                raise ParamError(f"{where}: keyframe {frame} is given twice")
            at = f"{where} keyframe {frame}"
            by_frame[frame] = _box_points(coords, at) if kind == "box" else _polygon_points(coords, at)
        frames = tuple(sorted(by_frame))
        counts = {len(by_frame[f]) for f in frames}
        if len(counts) > 1:
            raise ParamError(f"{where}: polygon keyframes have different point counts {sorted(counts)}")
        shapes.append(Shape(kind=str(kind), frames=frames, points=np.stack([by_frame[f] for f in frames])))
    return shapes


def rasterize_shapes(shapes: Sequence[Shape], n: int, width: int, height: int, scale: float = 1.0) -> np.ndarray:
    """The union of the shapes at frame ``n``, filled without anti-aliasing.

    ``scale`` multiplies the coordinates (for a proxy render at a fraction of full size);
    ``width``/``height`` are those of the output.

    Shape:
        - output: :math:`(H, W)` float32, 0 or 1
    """
    canvas = np.zeros((height, width), dtype=np.uint8)
    for shape in shapes:  # one call per shape: fillPoly's even-odd rule would cut overlaps out
        polygon = np.round(shape.at(n) * scale * (1 << _SHIFT)).astype(np.int32)
        cv2.fillPoly(canvas, [polygon], (1,), lineType=cv2.LINE_8, shift=_SHIFT)
    return canvas.astype(np.float32)


def _smoothstep(t: np.ndarray) -> np.ndarray:
    return t * t * (3.0 - 2.0 * t)


def refine_mask(
    mask: np.ndarray, dilate: float = 0, feather: float = 0, invert: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Binarise (at 0.5), optionally invert, dilate, and feather a mask.

    ``hard`` is what the fill must replace. ``soft`` is the compositing weight: 1 on ``hard``
    and falling smoothly (smoothstep of the distance) to 0 over ``feather`` pixels outside it,
    so the fill blends into the frame without a seam while no pixel of the object survives.

    Shape:
        - mask: :math:`(H, W)` float, 0..1
        - output: ``(hard, soft)``, :math:`(H, W)` bool and :math:`(H, W)` float32
    """
    hard = np.asarray(mask) >= 0.5
    if invert:
        hard = ~hard
    radius = int(round(dilate))
    if radius > 0 and hard.any():
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        hard = cv2.dilate(hard.astype(np.uint8), kernel).astype(bool)
    if feather <= 0 or not hard.any():
        return hard, hard.astype(np.float32)
    if hard.all():
        return hard, np.ones(hard.shape, dtype=np.float32)
    # distance from each outside pixel to the nearest hard pixel (0 on hard)
    distance = cv2.distanceTransform((~hard).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    soft = _smoothstep(np.clip(1.0 - distance / float(feather), 0.0, 1.0)).astype(np.float32)
    soft[hard] = 1.0
    return hard, soft


def check_mask_clip(source: ClipInfo, mask: ClipInfo, owner: str) -> None:
    """Raise ``GraphError`` naming ``owner`` when a mask clip does not match its source clip in
    size, frame count (where both are known) or frame rate."""
    if (mask.width, mask.height) != (source.width, source.height):
        raise GraphError(
            f"{owner}: the mask clip is {mask.width}x{mask.height} but the source is {source.width}x{source.height}"
        )
    if mask.num_frames > 0 and source.num_frames > 0 and mask.num_frames != source.num_frames:
        raise GraphError(f"{owner}: the mask clip has {mask.num_frames} frames but the source has {source.num_frames}")
    if mask.fps != source.fps:
        raise GraphError(f"{owner}: the mask clip runs at {mask.fps} fps but the source at {source.fps} fps")
