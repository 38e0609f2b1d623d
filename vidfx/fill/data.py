"""Training data for the generative fill: natural pictures, holes shaped like objects and
brush strokes, and the coarse (Telea) fill the model refines.

Pictures come from ``train_hr/`` (photos), CamVid ``train/`` and frames of the training clips
of ``scenes/``. The clips the evaluation uses (``clips/`` and the tripod shots of
``scenes/`` listed in ``EVAL_SCENES``), Vid4 and CamVid test are never read here; CamVid
``val/`` is the model-selection split.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from .maskgen import ObjectShapes, training_mask

DATA = Path(os.environ.get("VIDFX_DATA", "/work/shared/data"))
# Tripod shots kept for the static regime of `vidfx eval fill` (never trained on).
EVAL_SCENES = ("sam2_01_dog.mp4", "sam2_04_coffee.mp4", "intel_bottle-detection.mp4", "mdn_flower.webm")
# HDR10 (PQ) pictures look nothing like the SDR frames the node sees; left out.
SKIP_SCENES = ("androidx_hdr10-av1.mp4",)


def inpaint(image: np.ndarray, hole: np.ndarray, method: str = "telea", radius: int = 3) -> np.ndarray:
    """OpenCV's single-picture inpainting of ``hole``: ``telea`` or ``ns`` (Navier-Stokes).
    Telea is the coarse fill the generator refines; both are baselines of the evaluation.

    Shape:
        - image: :math:`(H, W, 3)` float32 0..1 (or uint8)
        - hole: :math:`(H, W)` bool
        - output: :math:`(H, W, 3)` float32 0..1
    """
    u8 = image if image.dtype == np.uint8 else (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    if not hole.any():
        return u8.astype(np.float32) / 255
    flag = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}[method]
    return cv2.inpaint(u8, hole.astype(np.uint8), radius, flag).astype(np.float32) / 255


def telea(image: np.ndarray, hole: np.ndarray, radius: int = 3) -> np.ndarray:
    """:func:`inpaint` with Telea's method."""
    return inpaint(image, hole, "telea", radius)


def _fit(image: np.ndarray, long_side: int) -> np.ndarray:
    h, w = image.shape[:2]
    s = long_side / max(h, w)
    if s >= 1:
        return image
    return cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def read_rgb(path: Path, long_side: int = 640) -> np.ndarray:
    """A picture file as uint8 RGB (H, W, 3), shrunk so its long side is at most ``long_side``."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise OSError(f"cannot read {path}")
    return _fit(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), long_side)


def clip_frames(path: Path, every: int, limit: int, long_side: int = 640) -> list[np.ndarray]:
    """Every ``every``-th decoded frame of a video (at most ``limit``), uint8 RGB."""
    out = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % every == 0:
                out.append(_fit(frame.to_ndarray(format="rgb24"), long_side))
                if len(out) >= limit:
                    break
    return out


def training_pictures(data: Path = DATA, scenes_every: int = 10, scenes_limit: int = 40) -> list[np.ndarray]:
    """All training pictures (uint8 RGB): train_hr photos, CamVid train and training-scene frames."""
    pics = [read_rgb(p) for p in sorted((data / "train_hr").glob("*.jpg"))]
    pics += [read_rgb(p) for p in sorted((data / "camvid" / "train").glob("*.jpg"))]
    for clip in sorted((data / "scenes").iterdir()):
        if clip.name in EVAL_SCENES or clip.name in SKIP_SCENES or clip.suffix not in (".mp4", ".mov", ".webm"):
            continue
        pics += clip_frames(clip, scenes_every, scenes_limit)
    return pics


def validation_pictures(data: Path = DATA, count: int = 32) -> list[np.ndarray]:
    """CamVid val pictures (model selection only), evenly spaced."""
    files = sorted((data / "camvid" / "val").glob("*.jpg"))
    step = max(1, len(files) // count)
    return [read_rgb(p) for p in files[::step][:count]]


@dataclass
class CropConfig:
    """How a training example is cut: the picture is scaled so its long side is a random
    length in ``long_side`` (the node's working resolution is about 320 px), then cropped."""

    size: int = 128
    long_side: tuple[int, int] = (200, 420)


def make_example(
    picture: np.ndarray, rng: np.random.Generator, shapes: ObjectShapes, crop: CropConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One training example: (truth (S,S,3) float32, hole (S,S) bool, coarse (S,S,3) float32)."""
    h, w = picture.shape[:2]
    side = int(rng.integers(crop.long_side[0], crop.long_side[1] + 1))
    s = max(side / max(h, w), crop.size / min(h, w))
    img = cv2.resize(
        picture, (max(crop.size, round(w * s)), max(crop.size, round(h * s))), interpolation=cv2.INTER_AREA
    )
    y = int(rng.integers(0, img.shape[0] - crop.size + 1))
    x = int(rng.integers(0, img.shape[1] - crop.size + 1))
    img = img[y : y + crop.size, x : x + crop.size]
    if rng.random() < 0.5:
        img = img[:, ::-1]
    img = np.ascontiguousarray(img)
    hole = training_mask(crop.size, crop.size, rng, shapes)
    truth = img.astype(np.float32) / 255
    return truth, hole, telea(img, hole)


class FillBatches(torch.utils.data.IterableDataset):
    """Endless batches ``(truth, hole, coarse)``: float32 (B,3,S,S), (B,1,S,S), (B,3,S,S)."""

    def __init__(self, pictures: list[np.ndarray], shapes: ObjectShapes, batch: int, crop: CropConfig, seed: int):
        super().__init__()
        self.pictures, self.shapes, self.batch, self.crop, self.seed = pictures, shapes, batch, crop, seed

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        if info is not None:
            torch.set_num_threads(1)
        rng = np.random.default_rng(self.seed + 7919 * (info.id if info else 0))
        while True:
            items = [
                make_example(self.pictures[int(rng.integers(len(self.pictures)))], rng, self.shapes, self.crop)
                for _ in range(self.batch)
            ]
            truth, hole, coarse = (np.stack(x) for x in zip(*items, strict=True))
            yield (
                torch.from_numpy(truth).permute(0, 3, 1, 2).contiguous(),
                torch.from_numpy(hole).unsqueeze(1).float(),
                torch.from_numpy(coarse).permute(0, 3, 1, 2).contiguous(),
            )
