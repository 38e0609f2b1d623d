"""Keypoint interpolation across a cut: eased in time and head-pose aware.

The face points of the two end frames are related by a 3D similarity (rotation, scale,
translation, found with Umeyama's method) plus a residual (expression). Rotation is slerped,
scale interpolated geometrically, translation and residual linearly, all with the same eased
time. A head that turns between the two ends therefore turns through the transition instead of
being squashed flat, as a straight per-point blend would do. Body points are blended linearly
(eased). At t=0 and t=1 the result equals the end frames' keypoints.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from .keypoints import Keypoints

EASINGS = ("linear", "smoothstep", "sine")


def ease(t: float | np.ndarray, kind: str = "smoothstep"):
    """Map time 0..1 to eased time 0..1 (``linear``, ``smoothstep`` (cubic) or ``sine``)."""
    t = np.clip(t, 0.0, 1.0)
    if kind == "linear":
        return t
    if kind == "smoothstep":
        return t * t * (3 - 2 * t)
    if kind == "sine":
        return 0.5 - 0.5 * np.cos(np.pi * t)
    raise ValueError(f"unknown easing {kind!r}; valid: {', '.join(EASINGS)}")


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray]:
    """Scale s and rotation R (no reflection) minimising |dst - s R src|² for centred point sets."""
    cov = dst.T @ src / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.eye(src.shape[1])
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1, -1] = -1
    rot = u @ sign @ vt
    var = (src ** 2).sum() / len(src)
    scale = float(np.trace(np.diag(d) @ sign) / max(var, 1e-12))
    return scale, rot


def transition_times(num_frames: int) -> np.ndarray:
    """Times of the frames strictly between the two end frames of an ``num_frames`` transition."""
    return np.arange(1, num_frames + 1) / (num_frames + 1)


def interpolate_face(fa: np.ndarray, fb: np.ndarray, times, easing: str = "smoothstep") -> list[np.ndarray]:
    """Face points (K, 3) at each time in ``times`` between ``fa`` (t=0) and ``fb`` (t=1)."""
    fa = fa.astype(np.float64)
    fb = fb.astype(np.float64)
    ca, cb = fa.mean(0), fb.mean(0)
    pa, pb = fa - ca, fb - cb
    scale, rot = umeyama(pa, pb)
    scale = max(scale, 1e-6)
    residual = (pb @ rot) / scale - pa  # B's shape expressed in A's pose, minus A's shape
    rotvec = Rotation.from_matrix(rot).as_rotvec()
    out = []
    for t in np.atleast_1d(times):
        e = float(ease(t, easing))
        r_t = Rotation.from_rotvec(rotvec * e).as_matrix()
        s_t = scale ** e
        pts = s_t * (pa + e * residual) @ r_t.T + ca + e * (cb - ca)
        out.append(pts.astype(np.float32))
    return out


def interpolate_keypoints(ka: Keypoints, kb: Keypoints, times, easing: str = "smoothstep") -> list[Keypoints]:
    """Keypoints at each time in ``times`` between ``ka`` (t=0) and ``kb`` (t=1).

    Where only one end has a face (or body), that end's points are held.
    """
    times = np.atleast_1d(np.asarray(times, dtype=np.float64))
    if ka.face is not None and kb.face is not None and ka.face.shape == kb.face.shape:
        faces = interpolate_face(ka.face, kb.face, times, easing)
    else:
        held = ka.face if ka.face is not None else kb.face
        faces = [None if held is None else held.copy() for _ in times]
    bodies = []
    for t in times:
        e = float(ease(t, easing))
        if ka.body is not None and kb.body is not None:
            b = (1 - e) * ka.body + e * kb.body
            b[:, 2] = np.minimum(ka.body[:, 2], kb.body[:, 2])
            bodies.append(b.astype(np.float32))
        else:
            held = ka.body if ka.body is not None else kb.body
            bodies.append(None if held is None else held.copy())
    num = max(ka.num_faces, kb.num_faces)
    return [Keypoints(f, b, num, ka.detector or kb.detector) for f, b in zip(faces, bodies)]
