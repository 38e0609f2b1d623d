"""Keypoint interpolation across a cut: eased in time and head-pose aware.

The face points of the two end frames are related by a 3D similarity (rotation, scale,
translation, found with Umeyama's method) plus a residual (expression). Rotation is slerped,
scale interpolated geometrically, translation and residual linearly, all with the same eased
time. A head that turns between the two ends therefore turns through the transition instead of
being squashed flat, as a straight per-point blend would do. Body points are blended linearly
(eased). At t=0 and t=1 the result equals the end frames' keypoints.

Optionally the points' velocities at the two ends (from the frame before A and the frame after B)
add a cubic Hermite term, damped by ``VELOCITY_DAMPING``: a head that is moving at the cut keeps
moving for a while instead of starting from rest. The term is zero at both ends, so the ends are
still exact. (On simulated 12-frame gaps in the training frames it lowers the keypoint error by
about 12 %; the damping was chosen there, see docs/jumpcut.md.)
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from .keypoints import Keypoints

EASINGS = ("linear", "smoothstep", "sine")
VELOCITY_DAMPING = 0.5  # share of the measured end velocity carried into the transition
MAX_SPEED = 0.15  # end velocities are capped at this share of the face (or body) size per frame


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
    var = (src**2).sum() / len(src)
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
        s_t = scale**e
        pts = s_t * (pa + e * residual) @ r_t.T + ca + e * (cb - ca)
        out.append(pts.astype(np.float32))
    return out


def hermite_offset(
    vel_a: np.ndarray | None, vel_b: np.ndarray | None, t: float, span: float, damping: float = VELOCITY_DAMPING
) -> np.ndarray | float:
    """Cubic Hermite velocity terms at time ``t``: ``vel_a``/``vel_b`` are per-frame velocities at the
    ends, ``span`` the frames from A to B. Zero at t=0 and t=1; zero if a velocity is missing."""
    if vel_a is None or vel_b is None:
        return 0.0
    h10, h11 = t**3 - 2 * t**2 + t, t**3 - t**2
    return damping * span * (h10 * vel_a + h11 * vel_b)


def _velocity(k0: Keypoints | None, k1: Keypoints | None, part: str) -> np.ndarray | None:
    """Per-frame velocity of ``part`` ("face"/"body") from ``k0`` to the next frame ``k1``."""
    if k0 is None or k1 is None:
        return None
    p0, p1 = getattr(k0, part), getattr(k1, part)
    if p0 is None or p1 is None or p0.shape != p1.shape:
        return None
    v = (p1 - p0).astype(np.float64)
    if part == "body":
        v[:, 2] = 0.0  # visibility is not a coordinate
    # a detection glitch must not fling the points: each point at most MAX_SPEED sizes per frame
    pts = p1[:, :2] if part == "face" else p1[p1[:, 2] > 0.5, :2]  # body: visible points only
    size = float(np.ptp(pts, axis=0).max()) if len(pts) >= 2 else 0.0
    speed = np.linalg.norm(v[:, :2], axis=1, keepdims=True)
    limit = MAX_SPEED * max(size, 1.0)
    return v * np.minimum(1.0, limit / np.maximum(speed, 1e-9))


def interpolate_keypoints(
    ka: Keypoints,
    kb: Keypoints,
    times,
    easing: str = "smoothstep",
    prev_a: Keypoints | None = None,
    next_b: Keypoints | None = None,
    span: float | None = None,
    damping: float = VELOCITY_DAMPING,
) -> list[Keypoints]:
    """Keypoints at each time in ``times`` between ``ka`` (t=0) and ``kb`` (t=1).

    ``prev_a`` (the frame before A) and ``next_b`` (the frame after B) give the end velocities
    for the Hermite term; ``span`` is the number of frame intervals from A to B (the transition
    length + 1), ``damping`` the share of the end velocities used. Where only one end has a face
    (or body), that end's points are held.
    """
    times = np.atleast_1d(np.asarray(times, dtype=np.float64))
    use_vel = span is not None and span > 0
    if ka.face is not None and kb.face is not None and ka.face.shape == kb.face.shape:
        faces = interpolate_face(ka.face, kb.face, times, easing)
        if use_vel:
            va, vb = _velocity(prev_a, ka, "face"), _velocity(kb, next_b, "face")
            faces = [(f + hermite_offset(va, vb, t, span, damping)).astype(np.float32) for f, t in zip(faces, times)]
    else:
        held = ka.face if ka.face is not None else kb.face
        faces = [None if held is None else held.copy() for _ in times]
    bodies = []
    bva = _velocity(prev_a, ka, "body") if use_vel else None
    bvb = _velocity(kb, next_b, "body") if use_vel else None
    for t in times:
        e = float(ease(t, easing))
        if ka.body is not None and kb.body is not None:
            b = (1 - e) * ka.body + e * kb.body + (hermite_offset(bva, bvb, t, span, damping) if use_vel else 0.0)
            b[:, 2] = np.minimum(ka.body[:, 2], kb.body[:, 2])
            bodies.append(b.astype(np.float32))
        else:
            held = ka.body if ka.body is not None else kb.body
            bodies.append(None if held is None else held.copy())
    num = max(ka.num_faces, kb.num_faces)
    return [Keypoints(f, b, num, ka.detector or kb.detector) for f, b in zip(faces, bodies)]
