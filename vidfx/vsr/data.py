"""Training and validation clips for VSR.

Two sources of HR clips:

* stills from ``train_hr/`` moved by a random camera (pan, zoom, rotation; smooth over the
  clip), rendered with ``cv2.warpAffine``;
* real videos (``clips/``, ``talking/``), decoded once (PyAV, or OpenCV without it), downscaled by 2 (cleaner
  ground truth: less codec noise), cached as .npy.

A fixed held-out split (every 10th still, plus ``clips/bear.mp4`` and
``talking/3.mp4``) is used for checkpoint selection. Vid4 and CamVid are never touched here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ..ops.flow import DISFlow
from .degrade import degrade

DEFAULT_DATA = Path(os.environ.get("VIDFX_DATA", "/work/shared/data"))
TRAIN_CLIPS = (
    "clips/apple.mp4",
    "clips/paragliding-launch.mp4",
    "clips/pillow.mp4",
    "clips/teddy.mp4",
    "talking/1.mp4",
    "talking/2.mp4",
)
VAL_CLIPS = ("clips/bear.mp4", "talking/3.mp4")


def split_stills(root: Path) -> tuple[list[Path], list[Path]]:
    """(train, val) lists of the photos in ``root/train_hr``: every 10th (sorted) is val."""
    files = sorted((root / "train_hr").glob("*.jpg"))
    val = files[5::10]
    train = [f for f in files if f not in val]
    return train, val


def load_rgb(path: Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise OSError(f"cannot read image {path}")
    return np.ascontiguousarray(img[..., ::-1])


def decode_video(path: Path, downscale: int = 2, cache_dir: Path | None = None) -> np.ndarray:
    """All frames of a video as (T, H, W, 3) uint8, area-downscaled by ``downscale``;
    cached as .npy in ``cache_dir`` when given."""
    if cache_dir is not None:
        cache = cache_dir / f"{path.parent.name}_{path.stem}_d{downscale}.npy"
        if cache.exists():
            return np.load(cache)
    frames = []
    for a in _decode_rgb(path):
        if downscale > 1:
            a = cv2.resize(a, (a.shape[1] // downscale, a.shape[0] // downscale), interpolation=cv2.INTER_AREA)
        frames.append(a)
    if not frames:
        raise OSError(f"no video frames decoded from {path}")
    arr = np.stack(frames)
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        np.save(cache, arr)
    return arr


def _decode_rgb(path: Path):
    """Yield the frames of a video as (H, W, 3) uint8 RGB: PyAV (``vidfx.io``) when installed,
    else OpenCV's own FFmpeg build (training machines that have torch and OpenCV but not PyAV)."""
    try:
        from vidfx.io.frames import rgb_frames
    except ImportError:
        cap = cv2.VideoCapture(str(path))
        try:
            while True:
                ok, bgr = cap.read()
                if not ok:
                    break
                yield np.ascontiguousarray(bgr[..., ::-1])
        finally:
            cap.release()
        return
    yield from rgb_frames(path)


def camera_clip(img: np.ndarray, frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A (frames, size, size, 3) float32 clip filmed from still ``img`` by a random smooth
    camera: constant pan velocity (0..3 LR px/frame at x4) with jitter, zoom drift and
    rotation drift. Starts from a random scale in 0.5..1 (sharper ground truth)."""
    h, w = img.shape[:2]
    s0 = rng.uniform(0.5, 1.0)  # source pixels per output pixel^-1 ... output = s0 * source
    speed = rng.uniform(0, 12) if rng.random() < 0.85 else 0.0
    ang = rng.uniform(0, 2 * np.pi)
    vel = speed * np.array([np.cos(ang), np.sin(ang)])
    zoom_rate = rng.uniform(-0.015, 0.015) if rng.random() < 0.5 else 0.0
    rot_rate = np.deg2rad(rng.uniform(-0.6, 0.6)) if rng.random() < 0.5 else 0.0
    # source-space extent needed: crop diagonal / scale plus motion
    travel = (speed * frames + size) / s0 * 1.5 + 4
    cx_lo, cx_hi = travel / 2, w - travel / 2
    cy_lo, cy_hi = travel / 2, h - travel / 2
    if cx_lo >= cx_hi or cy_lo >= cy_hi:  # image too small for this motion: stand still
        vel[:] = 0
        cx_lo, cx_hi, cy_lo, cy_hi = size / s0 / 2 + 1, w - size / s0 / 2 - 1, size / s0 / 2 + 1, h - size / s0 / 2 - 1
        cx_lo, cy_lo = min(cx_lo, w / 2), min(cy_lo, h / 2)
        cx_hi, cy_hi = max(cx_hi, cx_lo), max(cy_hi, cy_lo)
    centre = np.array([rng.uniform(cx_lo, cx_hi), rng.uniform(cy_lo, cy_hi)])
    centre -= vel / s0 * (frames - 1) / 2  # the path is centred on the chosen point
    # warpAffine has no area filter: when shrinking a lot, pre-shrink the photo once
    pre = 1.0
    if s0 < 0.8:
        pre = s0 * 1.25
        img = cv2.resize(img, None, fx=pre, fy=pre, interpolation=cv2.INTER_AREA)
    out = []
    jitter = np.zeros(2)
    for k in range(frames):
        jitter = 0.7 * jitter + rng.normal(0, 0.3, size=2) * (speed > 0)
        scale = s0 * (1 + zoom_rate) ** k
        theta = rot_rate * k
        c_src = centre + (vel * k + jitter) / s0
        cos, sin = np.cos(theta) / scale, np.sin(theta) / scale
        # destination (x, y) -> source: c_src + R/scale @ (p - size/2), then x pre
        m = (
            np.array(
                [
                    [cos, -sin, c_src[0] - (cos * size / 2 - sin * size / 2)],
                    [sin, cos, c_src[1] - (sin * size / 2 + cos * size / 2)],
                ]
            )
            * pre
        )
        out.append(
            cv2.warpAffine(
                img, m, (size, size), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT
            )
        )
    return np.stack(out).astype(np.float32) / 255.0


def video_clip(video: np.ndarray, frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random (frames, size, size, 3) float32 window of a decoded video (stride 1 or 2)."""
    t, h, w = video.shape[:3]
    stride = 2 if (rng.random() < 0.3 and t > 2 * frames) else 1
    start = int(rng.integers(0, t - stride * (frames - 1)))
    y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    clip = video[start : start + stride * frames : stride, y : y + size, x : x + size]
    return clip.astype(np.float32) / 255.0


def augment(clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random horizontal flip, vertical flip, transpose and time reversal."""
    if rng.random() < 0.5:
        clip = clip[:, :, ::-1]
    if rng.random() < 0.2:
        clip = clip[:, ::-1]
    if rng.random() < 0.5:
        clip = clip.transpose(0, 2, 1, 3)
    if rng.random() < 0.5:
        clip = clip[::-1]
    return np.ascontiguousarray(clip)


@dataclass
class Batch:
    """One training batch: ``lr`` (B,T,3,h,w), ``hr`` (B,T,3,H,W), flows (B,T,2,h,w)."""

    lr: torch.Tensor
    hr: torch.Tensor
    flow_prev: torch.Tensor
    flow_next: torch.Tensor


def make_batch(
    hr_clips: list[np.ndarray], scale: int, modes: list[str], rng: np.random.Generator, flow: DISFlow
) -> Batch:
    """Degrade HR clips into LR, compute DIS flow on the LR frames, stack as tensors."""
    lrs, hrs, fps, fns = [], [], [], []
    for clip, mode in zip(hr_clips, modes):
        lr = degrade(clip, scale, mode, rng)
        lr = np.clip(lr, 0, 1)
        fp, fn = flow.clip(lr)
        lrs.append(torch.from_numpy(np.ascontiguousarray(lr.transpose(0, 3, 1, 2))))
        hrs.append(torch.from_numpy(np.ascontiguousarray(clip.transpose(0, 3, 1, 2))))
        fps.append(fp)
        fns.append(fn)
    return Batch(torch.stack(lrs), torch.stack(hrs), torch.stack(fps), torch.stack(fns))


class ClipSampler:
    """Draws random HR training clips: ``p_video`` of them from real videos, the rest from
    stills with a random camera."""

    def __init__(self, root: Path, split: str = "train", p_video: float = 0.3, cache_dir: Path | None = None):
        train, val = split_stills(root)
        paths = train if split == "train" else val
        self.stills = [load_rgb(p) for p in paths]
        names = TRAIN_CLIPS if split == "train" else VAL_CLIPS
        self.videos = []
        for n in names:
            if not (root / n).exists():
                continue
            try:
                self.videos.append(decode_video(root / n, 2, cache_dir))
            except OSError as exc:  # a clip this machine cannot decode: train without it
                print(f"warning: skipping {root / n}: {exc}", flush=True)
        self.p_video = p_video if self.videos else 0.0

    def sample(self, frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
        """One augmented HR clip (frames, size, size, 3) float32."""
        fits = [v for v in self.videos if v.shape[1] >= size and v.shape[2] >= size and v.shape[0] >= frames]
        if fits and rng.random() < self.p_video:  # videos smaller than the crop are skipped
            v = fits[int(rng.integers(len(fits)))]
            clip = video_clip(v, frames, size, rng)
        else:
            img = self.stills[int(rng.integers(len(self.stills)))]
            clip = camera_clip(img, frames, size, rng)
        return augment(clip, rng)


def validation_set(
    root: Path, scale: int, frames: int = 7, lr_size: int = 48, cache_dir: Path | None = None, seed: int = 1234
) -> list[Batch]:
    """The fixed held-out validation batches (BI degradation): two camera clips per
    held-out still and four windows of each held-out video."""
    rng = np.random.default_rng(seed)
    sampler = ClipSampler(root, "val", cache_dir=cache_dir)
    flow = DISFlow()
    size = lr_size * scale
    clips = []
    for img in sampler.stills:
        for _ in range(2):
            clips.append(camera_clip(img, frames, size, rng))
    for v in sampler.videos:
        for _ in range(4):
            clips.append(video_clip(v, frames, size, rng))
    return [make_batch([c], scale, ["bi"], rng, flow) for c in clips]
