"""Small PyAV helpers for the jump-cut tools (training, evaluation), independent of vidfx.io."""
from __future__ import annotations

from fractions import Fraction

import cv2
import numpy as np

from vidfx.core.errors import MediaError


def read_clip(path: str, size: int | None = None, max_frames: int | None = None) -> tuple[list[np.ndarray], Fraction]:
    """Decode a video into RGB uint8 (H, W, 3) arrays and return them with the exact frame rate.

    ``size`` resizes every frame to ``size x size`` (the talking-head clips are square crops).
    """
    import av

    try:
        container = av.open(path)
    except (OSError, av.error.FFmpegError) as exc:  # type: ignore[attr-defined]
        raise MediaError(f"jumpcut: cannot open {path}: {exc}") from exc
    with container:
        stream = container.streams.video[0]
        fps = Fraction(stream.average_rate) if stream.average_rate else Fraction(25)
        frames = []
        for frame in container.decode(video=0):
            img = frame.to_ndarray(format="rgb24")
            if size:
                img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
            frames.append(img)
            if max_frames and len(frames) >= max_frames:
                break
    if not frames:
        raise MediaError(f"jumpcut: {path} has no decodable video frames")
    return frames, fps


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float 0..1 (H, W, C) to uint8, rounding and clipping."""
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
