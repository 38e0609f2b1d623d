"""Small video helpers for the jump-cut tools (training, evaluation)."""

from __future__ import annotations

from fractions import Fraction

import cv2
import numpy as np

from vidfx.core.errors import MediaError


def read_clip(path: str, size: int | None = None, max_frames: int | None = None) -> tuple[list[np.ndarray], Fraction]:
    """Decode a video into RGB uint8 (H, W, 3) arrays and return them with the exact frame rate.

    ``size`` resizes every frame to ``size x size`` (the talking-head clips are square crops).
    """
    from vidfx.io.frames import frame_rate, rgb_frames

    frames = [
        cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA) if size else img
        for img in rgb_frames(path, max_frames)
    ]
    if not frames:
        raise MediaError(f"jumpcut: {path} has no decodable video frames")
    return frames, frame_rate(path)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float 0..1 (H, W, C) to uint8, rounding and clipping."""
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
