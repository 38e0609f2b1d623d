"""Random masks for training and evaluating the fill models: free-form brush strokes
(DeepFill v2) and object silhouettes cut from CamVid label maps, still or moving.

Everything takes a seeded ``np.random.Generator``, so a seed gives the same masks every time.
Use CamVid ``trainannot/`` silhouettes for training and ``valannot/`` for evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from vidfx.core.errors import MediaError

# CamVid classes whose connected components make plausible objects to remove
OBJECT_CLASSES = {2: "pole", 5: "tree", 6: "signsymbol", 7: "fence", 8: "car", 9: "pedestrian", 10: "bicyclist"}
MIN_OBJECT_AREA = 200
MAX_TRAINING_AREA = 0.5


def free_form_mask(h: int, w: int, rng: np.random.Generator, max_strokes: int = 4) -> np.ndarray:
    """DeepFill-v2-style free-form mask: 1..``max_strokes`` brush strokes, each a polyline of
    random vertices and turning angles, drawn with a width of 5-15% of ``min(h, w)``.

    Shape:
        - output: :math:`(H, W)` bool
    """
    canvas = np.zeros((h, w), dtype=np.uint8)
    average_radius = math.hypot(h, w) / 8
    for _ in range(int(rng.integers(1, max_strokes + 1))):
        vertices = int(rng.integers(4, 13))
        width = max(1, int(round(rng.uniform(0.05, 0.15) * min(h, w))))
        mean_angle = 2 * math.pi / 5
        angle_range = 2 * math.pi / 15
        x, y = float(rng.uniform(0, w)), float(rng.uniform(0, h))
        points = [(x, y)]
        for i in range(vertices):
            angle = rng.uniform(mean_angle - angle_range, mean_angle + angle_range)
            if i % 2 == 0:
                angle = 2 * math.pi - angle
            length = float(np.clip(rng.normal(average_radius, average_radius / 2), 0, 2 * average_radius))
            x = float(np.clip(x + length * math.cos(angle), 0, w - 1))
            y = float(np.clip(y + length * math.sin(angle), 0, h - 1))
            points.append((x, y))
        pts = [(int(round(px)), int(round(py))) for px, py in points]
        for a, b in zip(pts[:-1], pts[1:]):
            cv2.line(canvas, a, b, (1,), thickness=width)
        for p in pts:
            cv2.circle(canvas, p, width // 2, (1,), thickness=-1)
    mask = canvas.astype(bool)
    if rng.random() < 0.5:
        mask = mask[:, ::-1]
    if rng.random() < 0.5:
        mask = mask[::-1, :]
    return np.ascontiguousarray(mask)


class ObjectShapes:
    """A bank of object silhouettes: cropped bool masks, each tight around one object.

    Shape:
        - masks: a list of :math:`(h_i, w_i)` bool arrays
    """

    def __init__(self, masks: Sequence[np.ndarray], classes: Sequence[int] | None = None):
        self.masks = [np.ascontiguousarray(m, dtype=bool) for m in masks]
        self.classes = list(classes) if classes is not None else [-1] * len(self.masks)
        if len(self.classes) != len(self.masks):
            raise ValueError("ObjectShapes: classes and masks differ in length")
        if not self.masks or any(not m.any() for m in self.masks):
            raise ValueError("ObjectShapes needs at least one mask, and no empty masks")

    def __len__(self) -> int:
        return len(self.masks)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """One silhouette at random, flipped left-right half the time.

        Shape:
            - output: :math:`(h, w)` bool
        """
        mask = self.masks[int(rng.integers(len(self.masks)))]
        return mask[:, ::-1] if rng.random() < 0.5 else mask

    @classmethod
    def from_camvid(cls, label_dir: str | Path, max_files: int | None = None) -> ObjectShapes:
        """Cut silhouettes out of the CamVid label PNGs in ``label_dir`` (in name order, the first
        ``max_files``): 8-connected components of pole, tree, sign, fence, car, pedestrian and
        bicyclist with at least ``MIN_OBJECT_AREA`` pixels."""
        folder = Path(label_dir)
        files = sorted(folder.glob("*.png"))
        if max_files is not None:
            files = files[:max_files]
        if not files:
            raise MediaError(f"{folder}: no CamVid label PNGs found")
        masks: list[np.ndarray] = []
        classes: list[int] = []
        for path in files:
            labels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if labels is None or labels.ndim != 2:
                raise MediaError(f"{path}: not a one-channel label PNG")
            for class_id in OBJECT_CLASSES:
                binary = (labels == class_id).astype(np.uint8)
                if not binary.any():
                    continue
                count, components, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
                for i in range(1, count):
                    x, y, bw, bh, area = (int(v) for v in stats[i])
                    if area >= MIN_OBJECT_AREA:
                        masks.append(components[y : y + bh, x : x + bw] == i)
                        classes.append(class_id)
        if not masks:
            raise MediaError(f"{folder}: no objects of {MIN_OBJECT_AREA} px or more in the label maps")
        return cls(masks, classes)


def _resize(mask: np.ndarray, scale: float) -> np.ndarray:
    h, w = mask.shape
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    resized = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
    out = resized >= 0.5
    if not out.any():  # a tiny result can lose every pixel to the threshold
        out[out.shape[0] // 2, out.shape[1] // 2] = True
    return out


def _paste(canvas: np.ndarray, mask: np.ndarray, centre_x: float, centre_y: float) -> None:
    """OR ``mask`` into ``canvas`` centred at (x, y), clipped at the canvas edges."""
    h, w = canvas.shape
    mh, mw = mask.shape
    top = int(round(centre_y - mh / 2))
    left = int(round(centre_x - mw / 2))
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + mh, h), min(left + mw, w)
    if y1 > y0 and x1 > x0:
        canvas[y0:y1, x0:x1] |= mask[y0 - top : y1 - top, x0 - left : x1 - left]


def object_mask(
    h: int, w: int, rng: np.random.Generator, shapes: ObjectShapes, area: tuple[float, float] = (0.03, 0.25)
) -> np.ndarray:
    """A random silhouette, flipped at random and scaled so that its area is a random fraction
    in ``area`` of the frame, centred anywhere in the frame (so it may be partly outside).

    Shape:
        - output: :math:`(H, W)` bool
    """
    silhouette = shapes.sample(rng)
    target = rng.uniform(*area) * h * w
    scaled = _resize(silhouette, math.sqrt(target / silhouette.sum()))
    canvas = np.zeros((h, w), dtype=bool)
    _paste(canvas, scaled, rng.uniform(0, w), rng.uniform(0, h))
    return canvas


def training_mask(h: int, w: int, rng: np.random.Generator, shapes: ObjectShapes) -> np.ndarray:
    """A training hole: half the time an object silhouette, a quarter free-form strokes, a quarter
    both; resampled until it covers at most ``MAX_TRAINING_AREA`` of the frame.

    Shape:
        - output: :math:`(H, W)` bool
    """
    for _ in range(20):
        choice = rng.random()
        if choice < 0.5:
            mask = object_mask(h, w, rng, shapes)
        elif choice < 0.75:
            mask = free_form_mask(h, w, rng)
        else:
            mask = object_mask(h, w, rng, shapes) | free_form_mask(h, w, rng)
        if mask.mean() <= MAX_TRAINING_AREA:
            return mask
    return object_mask(h, w, rng, shapes)  # at most 25% of the frame


def _safe_range(size: int, extent: int) -> tuple[float, float]:
    """Centre positions along one axis that keep an object of ``extent`` px mostly inside."""
    margin = min(0.4 * extent, size / 2)
    return margin, size - margin


def object_track(
    h: int,
    w: int,
    length: int,
    rng: np.random.Generator,
    shapes: ObjectShapes,
    area: tuple[float, float] = (0.05, 0.12),
    moving: bool = True,
) -> np.ndarray:
    """An object-shaped hole for a ``length``-frame clip, for evaluating video fill.

    With ``moving`` the silhouette travels on a smooth, slightly curved path at about 1-3% of
    the width per frame (back and forth when the frame is too small for a straight run),
    growing or shrinking slightly, and stays mostly inside the frame; without, it is the same
    mask on every frame.

    Shape:
        - output: :math:`(T, H, W)` bool
    """
    if length < 1:
        raise ValueError(f"object_track: length must be at least 1, got {length}")
    silhouette = shapes.sample(rng)
    base_scale = math.sqrt(rng.uniform(*area) * h * w / silhouette.sum())
    sh, sw = silhouette.shape
    lo_x, hi_x = _safe_range(w, int(sw * base_scale))
    lo_y, hi_y = _safe_range(h, int(sh * base_scale))
    start = np.array([rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)])
    track = np.zeros((length, h, w), dtype=bool)
    if not moving:
        frame = np.zeros((h, w), dtype=bool)
        _paste(frame, _resize(silhouette, base_scale), start[0], start[1])
        track[:] = frame
        return track

    speed = rng.uniform(0.01, 0.03) * w
    # the direction (of a few random ones) with the longest straight run inside the safe box
    best_reach, direction = -1.0, np.array([1.0, 0.0])
    for angle in rng.uniform(0, 2 * math.pi, size=8):
        d = np.array([math.cos(angle), math.sin(angle)])
        reach = min(
            (hi_x - start[0]) / d[0] if d[0] > 1e-9 else (lo_x - start[0]) / d[0] if d[0] < -1e-9 else math.inf,
            (hi_y - start[1]) / d[1] if d[1] > 1e-9 else (lo_y - start[1]) / d[1] if d[1] < -1e-9 else math.inf,
        )
        if reach > best_reach:
            best_reach, direction = reach, d
    reach = max(best_reach, 1e-6)
    normal = np.array([-direction[1], direction[0]])
    bend = rng.uniform(-0.1, 0.1) * min(h, w)
    growth = rng.uniform(-0.15, 0.15)
    total = speed * (length - 1)
    for t in range(length):
        u = t / (length - 1) if length > 1 else 0.0
        travelled = speed * t
        if total > reach:  # oscillate smoothly over the run, average speed unchanged
            travelled = reach * (1 - math.cos(math.pi * travelled / reach)) / 2
        centre = start + travelled * direction + bend * math.sin(math.pi * u) * normal
        centre = np.clip(centre, [lo_x, lo_y], [hi_x, hi_y])
        _paste(track[t], _resize(silhouette, base_scale * (1 + growth * u)), centre[0], centre[1])
    return track
