"""Keypoints -> an image-like map the synthesizer reads (our stand-in for DensePose's IUV).

Channels (``KEYMAP_CHANNELS``):
0-1  canonical face coordinates (u, v) of the face surface under each pixel (flat-shaded mesh
     triangles, drawn far to near), 0 outside the face;
2    face mask; 3 lips; 4 eyes (with irises and brows);
5    body skeleton lines (pose points with visibility > 0.5);
6-7  pixel coordinates x, y in -1..1 (so background pixels can still be matched by position);
8    irises (gaze, and how far the eyelids cover them: blinks);
9    hands: MediaPipe hand skeletons where found, else the pose's wrist/palm points.

Synthesizers trained before channels 8-9 existed read the first 8 (``SynthConfig.keymap_channels``).
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from .keypoints import HAND_ROWS, IRIS_POINTS, FaceTopology, Keypoints

KEYMAP_CHANNELS = 10
POSE_EDGES = np.array(
    [
        (0, 1),
        (1, 2),
        (2, 3),
        (3, 7),
        (0, 4),
        (4, 5),
        (5, 6),
        (6, 8),
        (9, 10),
        (11, 12),
        (11, 13),
        (13, 15),
        (12, 14),
        (14, 16),
        (11, 23),
        (12, 24),
        (23, 24),
    ],
    dtype=np.int32,
)
POSE_HAND_EDGES = {  # the pose's own wrist-palm points, drawn where no hand skeleton was found
    "left": np.array([(15, 17), (15, 19), (15, 21), (17, 19)], np.int32),
    "right": np.array([(16, 18), (16, 20), (16, 22), (18, 20)], np.int32),
}
_SHIFT = 4  # sub-pixel bits for cv2 drawing


@functools.cache
def _hand_edges() -> np.ndarray:
    from mediapipe.python.solutions import hands

    return np.array(sorted(hands.HAND_CONNECTIONS), np.int32)


def _draw_lines(img: np.ndarray, pts: np.ndarray, edges: np.ndarray, visible: np.ndarray, width: int) -> None:
    ip = np.round(pts * (1 << _SHIFT)).astype(np.int32)
    for a, b in edges:
        if visible[a] and visible[b]:
            cv2.line(img, tuple(int(v) for v in ip[a]), tuple(int(v) for v in ip[b]), 1.0, width, cv2.LINE_AA, _SHIFT)


def render_keymap(kp: Keypoints, topology: FaceTopology, height: int, width: int, scale: float = 1.0) -> np.ndarray:
    """Draw ``kp`` (pixel coordinates times ``scale``) into a (KEYMAP_CHANNELS, H, W) float32 map."""
    out = np.zeros((KEYMAP_CHANNELS, height, width), np.float32)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    out[6] = (xs + 0.5) / width * 2 - 1
    out[7] = (ys + 0.5) / height * 2 - 1
    if kp.face is not None:
        pts = kp.face[:, :2] * scale
        ipts = np.round(pts * (1 << _SHIFT)).astype(np.int32)
        tri = topology.triangles
        depth = kp.face[tri, 2].mean(1) if kp.face.shape[1] > 2 else np.zeros(len(tri))
        order = np.argsort(-depth)  # far first, near triangles paint over them
        uv = topology.template[tri].mean(1)  # (F, 2)
        # lips / eyes: triangles touching a point of the group (a band around mouth and eyes)
        code = np.zeros(len(tri), np.float32)
        for bit, names in ((1.0, ("lips",)), (2.0, ("eyes", "brows"))):
            for name in names:
                if name in topology.groups:
                    code = np.where(np.isin(tri, topology.groups[name]).any(1) & (code < bit), code + bit, code)
        img = np.zeros((height, width, 4), np.float32)
        for f in order:
            cv2.fillConvexPoly(
                img, ipts[tri[f]], (float(uv[f, 0]), float(uv[f, 1]), 1.0, float(code[f])), cv2.LINE_8, _SHIFT
            )
        out[0], out[1], out[2] = img[..., 0], img[..., 1], img[..., 2]
        parts = np.round(img[..., 3]).astype(np.int32)
        out[3] = (parts & 1).astype(np.float32)
        out[4] = ((parts & 2) > 0).astype(np.float32)
        if len(pts) > max(IRIS_POINTS["right"]):
            for iris in IRIS_POINTS.values():
                cv2.fillConvexPoly(out[8], ipts[iris], 1.0, cv2.LINE_AA, _SHIFT)
            # an eyelid hides part of the iris: keep only what lies inside the eye triangles
            out[8] *= out[4]
    if kp.body is not None:
        pts, visible = kp.body[:, :2] * scale, kp.body[:, 2] > 0.5
        width_px = max(1, height // 64)
        _draw_lines(out[5], pts, POSE_EDGES, visible, width_px)
        hands = np.zeros((height, width), np.float32)
        edges = _hand_edges()
        for side, rows in HAND_ROWS.items():
            if len(pts) >= rows[-1] + 1 and visible[rows[0]]:
                _draw_lines(hands, pts[rows], edges, visible[rows], max(1, width_px // 2))
            else:
                _draw_lines(hands, pts, POSE_HAND_EDGES[side], visible, width_px)
        out[9] = hands
    return out
