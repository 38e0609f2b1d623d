"""The people in the jump-cut data, split by identity, and how their clips are read.

25 talking-head clips of 25 different people (``talking/`` and ``talking_more/`` under
:data:`DATA_ROOT`), one clip per person. :data:`TRAIN_IDS` train the synthesizer prior and fit
the cut detector; :data:`VAL_IDS` select weights and settings and give the reported numbers.
Nobody is on both sides.

The clips come in many shapes (256x256 to 1080x1920 portrait phone video, 12 to 30 fps, with
or without sound). :func:`read_face_clip` turns any of them into the square frames the
synthesizer's training and evaluation work on: the largest square around the person's face,
resized to ``size``.
"""

from __future__ import annotations

import os
from fractions import Fraction

import cv2
import numpy as np

from vidfx.core.errors import MediaError

DATA_ROOT = "/work/shared/data"

TRAIN_IDS = (
    "talking/1",
    "talking_more/LatentSync_demo1_video",
    "talking_more/LivePortrait_d0",
    "talking_more/LivePortrait_d3",
    "talking_more/LivePortrait_d11",
    "talking_more/LivePortrait_d12",
    "talking_more/LivePortrait_d18",
    "talking_more/LivePortrait_s18",
    "talking_more/MimicTalk_Trump_10s",
    "talking_more/StyleHEAT_video",
    "talking_more/IPLAP_129",
    "talking_more/EAMM_disgusted",
    "talking_more/StyleTalk_feifeili_clip1",
    "talking_more/StyleTalk_happyenglish_clip2",
    "talking_more/StyleTalk_sadfather_clip1",
)
VAL_IDS = (
    "talking/2",
    "talking/3",
    "talking_more/LatentSync_demo3_video",
    "talking_more/XPortrait_driving_video",
    "talking_more/LivePortrait_d10",
    "talking_more/LivePortrait_d19",
    "talking_more/Real3DPortrait_May_5s",
    "talking_more/EDTalk_mouth_source",
    "talking_more/StyleTalk_nice_clip1",
    "talking_more/EAMM_happy",
)


def identities(split: str) -> tuple[str, ...]:
    """Identity names of a split: ``train``, ``val`` or ``all``."""
    if split == "train":
        return TRAIN_IDS
    if split == "val":
        return VAL_IDS
    if split == "all":
        return TRAIN_IDS + VAL_IDS
    raise ValueError(f"unknown split {split!r} (train, val, all)")


def clip_path(identity: str, root: str = DATA_ROOT) -> str:
    """The clip of an identity (``talking_more/EAMM_happy`` -> ``ROOT/talking_more/EAMM_happy.mp4``)."""
    return os.path.join(root, identity + ".mp4")


def face_square(frame: np.ndarray, detector=None) -> tuple[int, int, int]:
    """``(x0, y0, side)``: the largest square inside the frame centred on the face as nearly as
    the frame allows (the whole frame when it is square; its centre when no face is found).

    Shape: frame :math:`(H, W, 3)` uint8 RGB.
    """
    h, w = frame.shape[:2]
    side = min(h, w)
    if h == w:
        return 0, 0, side
    cx, cy = w / 2, h / 2
    if detector is not None:
        scale = min(1.0, 512 / max(h, w))
        small = cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        face = detector.detect(small).face
        if face is not None:
            cx, cy = (float(v) / scale for v in np.median(face[:, :2], axis=0))
    x0 = int(np.clip(round(cx - side / 2), 0, w - side))
    y0 = int(np.clip(round(cy - side / 2), 0, h - side))
    return x0, y0, side


def read_face_clip(
    path: str, size: int | None = 512, max_frames: int | None = None
) -> tuple[list[np.ndarray], Fraction]:
    """Decode a talking-head clip into square RGB uint8 frames around the face, and its exact
    frame rate.

    The square (:func:`face_square` on the first frame; fixed for the whole clip, so no
    camera motion is added) is cut from
    every frame as it is decoded, so a long 1080x1920 clip never sits in memory at full size;
    ``size`` then resizes it (None: keep the square's own size).

    Shape: list of :math:`(S, S, 3)` uint8, S = ``size``.
    """
    from vidfx.io.frames import frame_rate, rgb_frames

    from .keypoints import MediaPipeDetector

    box: tuple[int, int, int] | None = None
    frames = []
    for img in rgb_frames(path, max_frames):
        if box is None:  # placed on the first frame
            h, w = img.shape[:2]
            box = (0, 0, h)
            if h != w:
                det = MediaPipeDetector(video_mode=False, with_body=False)
                try:
                    box = face_square(img, det)
                finally:
                    det.close()
        x0, y0, side = box
        crop = img[y0 : y0 + side, x0 : x0 + side]
        if size and side != size:
            interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
            crop = cv2.resize(crop, (size, size), interpolation=interp)
        frames.append(np.ascontiguousarray(crop))
    if not frames:
        raise MediaError(f"jumpcut: {path} has no decodable video frames")
    return frames, frame_rate(path)
