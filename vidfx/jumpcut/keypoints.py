"""Face and body keypoints from models shipped inside PyPI packages, behind a small interface.

``KeypointDetector`` is the interface: ``detect(rgb) -> Keypoints``, plus the face topology the
rest of the pipeline needs (triangles for rasterising, a canonical template per vertex, index
groups for eyes and lips). Two detectors ship:

- ``MediaPipeDetector``: MediaPipe 0.10.21 legacy ``solutions`` face mesh (478 points with irises),
  pose (33 points, "full" model) and hands (21 points per hand).
- ``DlibDetector``: dlib's HOG face detector + the 68-point predictor from ``face-recognition-models``.

A user with DensePose (or anything else) subclasses ``KeypointDetector`` and passes an instance to
the node/evaluation code; nothing else needs to change.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass, field

import numpy as np

from vidfx.core.errors import ModelError

log = logging.getLogger("vidfx.jumpcut")

WEIGHTS_DIR = os.path.join(os.path.dirname(__file__), "weights")
POSE_POINTS = 33
HAND_POINTS = 21
HAND_ROWS = {  # rows of ``Keypoints.body`` holding the hand at the pose's left (15) / right (16) wrist
    "left": np.arange(POSE_POINTS, POSE_POINTS + HAND_POINTS),
    "right": np.arange(POSE_POINTS + HAND_POINTS, POSE_POINTS + 2 * HAND_POINTS),
}
IRIS_POINTS = {"left": np.arange(469, 473), "right": np.arange(474, 478)}  # face-mesh iris outlines


@dataclass
class Keypoints:
    """Keypoints of one frame, in pixels of the frame they were detected on.

    ``face``: (K, 3) x, y, depth (depth in pixel-like units, larger = farther) or None.
    ``body``: (33, 3) x, y, visibility (0..1) or None; (75, 3) with hands: rows
    ``HAND_ROWS["left"]`` / ``HAND_ROWS["right"]`` are the 21 points of each hand (visibility 1
    where that hand was found, else 0), each hand on the side of the pose wrist nearest to it.
    ``num_faces``: how many faces the detector saw (only the largest is kept).
    """

    face: np.ndarray | None
    body: np.ndarray | None = None
    num_faces: int = 0
    detector: str = ""

    @property
    def has_face(self) -> bool:
        """Whether a face was found."""
        return self.face is not None


@dataclass
class FaceTopology:
    """What is fixed about a detector's face points: triangles, canonical (u, v) per point, groups."""

    triangles: np.ndarray  # (F, 3) int
    template: np.ndarray  # (K, 2) float, canonical position per point, roughly in -1..1
    groups: dict[str, np.ndarray] = field(default_factory=dict)  # name -> point indices


class KeypointDetector:
    """Interface of a keypoint detector. Subclasses set ``name``/``topology`` and implement ``detect``."""

    name: str = ""
    topology: FaceTopology

    def detect(self, rgb: np.ndarray) -> Keypoints:
        """Keypoints of one RGB uint8 (H, W, 3) image."""
        raise NotImplementedError

    def detect_many(self, frames: list[np.ndarray]) -> list[Keypoints]:
        """Keypoints of several images (independently)."""
        return [self.detect(f) for f in frames]

    def close(self) -> None:
        """Release the underlying model."""


# --- topology helpers -------------------------------------------------------------------------


def triangles_from_edges(edges, num_points: int) -> np.ndarray:
    """Triangles (3-cliques) of an undirected edge set, each once, sorted."""
    nbrs = [set() for _ in range(num_points)]
    for a, b in edges:
        nbrs[a].add(b)
        nbrs[b].add(a)
    tris = set()
    for a, b in edges:
        for c in nbrs[a] & nbrs[b]:
            tris.add(tuple(sorted((a, b, c))))
    return np.array(sorted(tris), dtype=np.int32)


def normalize_shape(points: np.ndarray) -> np.ndarray:
    """Remove translation and scale of a 2D point set (centroid 0, RMS radius 1)."""
    p = points[:, :2] - points[:, :2].mean(0)
    return p / (np.sqrt((p**2).sum(1).mean()) + 1e-8)


def eye_aligned(template: np.ndarray, eye_idx: np.ndarray) -> np.ndarray:
    """Move a template so the two eye centres sit at (-0.35, -0.2) and (0.35, -0.2): detectors with
    different point sets then share one canonical (u, v) face space."""
    eyes = template[eye_idx]
    mid = np.median(eyes[:, 0])
    left, right = eyes[eyes[:, 0] < mid].mean(0), eyes[eyes[:, 0] >= mid].mean(0)
    d = right - left
    scale = 0.7 / (np.hypot(*d) + 1e-8)
    ang = -np.arctan2(d[1], d[0])
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    out = ((template - (left + right) / 2) @ rot.T) * scale + np.array([0.0, -0.2])
    return out.astype(np.float32)


def _template(name: str, fallback: np.ndarray | None) -> np.ndarray:
    path = os.path.join(WEIGHTS_DIR, f"face_template_{name}.npy")
    if os.path.exists(path):
        return np.load(path).astype(np.float32)
    if fallback is None:
        raise ModelError(f"jumpcut: face template {path} is missing")
    return fallback.astype(np.float32)


# --- MediaPipe --------------------------------------------------------------------------------


class MediaPipeDetector(KeypointDetector):
    """MediaPipe legacy ``solutions`` face mesh (478 points, refined irises) + pose (33, full
    model) + hands (up to two, 21 points each, appended to the body points: ``HAND_ROWS``).

    ``video_mode=True`` lets MediaPipe track between consecutive calls (faster, steadier); use
    ``False`` for unrelated images. ``with_body=False`` skips the pose and hand models.
    """

    name = "mediapipe"

    def __init__(self, video_mode: bool = False, with_body: bool = True, max_faces: int = 3):
        try:
            from mediapipe.python.solutions import face_mesh, hands, pose
        except Exception as exc:  # ImportError, or a broken install
            raise ModelError(f"jumpcut: MediaPipe face mesh unavailable ({exc})") from exc
        self._face = face_mesh.FaceMesh(
            static_image_mode=not video_mode,
            max_num_faces=max_faces,
            refine_landmarks=True,
            min_detection_confidence=0.5,
            min_tracking_confidence=0.5,
        )
        self._pose = (
            pose.Pose(static_image_mode=not video_mode, model_complexity=1, enable_segmentation=False)
            if with_body
            else None
        )
        self._hands = (
            hands.Hands(static_image_mode=not video_mode, max_num_hands=2, model_complexity=0) if with_body else None
        )
        edges = list(face_mesh.FACEMESH_TESSELATION)
        groups = {
            "lips": sorted({i for e in face_mesh.FACEMESH_LIPS for i in e}),
            "eyes": sorted(
                {
                    i
                    for e in (face_mesh.FACEMESH_LEFT_EYE | face_mesh.FACEMESH_RIGHT_EYE | face_mesh.FACEMESH_IRISES)
                    for i in e
                }
            ),
            "brows": sorted(
                {i for e in (face_mesh.FACEMESH_LEFT_EYEBROW | face_mesh.FACEMESH_RIGHT_EYEBROW) for i in e}
            ),
            "oval": sorted({i for e in face_mesh.FACEMESH_FACE_OVAL for i in e}),
        }
        groups = {k: np.array(v) for k, v in groups.items()}
        template = eye_aligned(_template("mediapipe", None), groups["eyes"])
        self.topology = FaceTopology(triangles_from_edges(edges, 478), template, groups)
        self.body_edges = np.array(sorted(pose.POSE_CONNECTIONS), dtype=np.int32)

    def detect(self, rgb: np.ndarray) -> Keypoints:
        h, w = rgb.shape[:2]
        rgb = np.ascontiguousarray(rgb)
        res = self._face.process(rgb)
        faces = res.multi_face_landmarks or []
        face = None
        if faces:
            arrays = [np.array([(p.x * w, p.y * h, p.z * w) for p in f.landmark], np.float32) for f in faces]
            areas = [np.ptp(a[:, 0]) * np.ptp(a[:, 1]) for a in arrays]
            face = arrays[int(np.argmax(areas))]
        body = None
        if self._pose is not None:
            pres = self._pose.process(rgb)
            if pres.pose_landmarks:
                body = np.zeros((POSE_POINTS + 2 * HAND_POINTS, 3), np.float32)
                body[:POSE_POINTS] = [(p.x * w, p.y * h, p.visibility) for p in pres.pose_landmarks.landmark]
                self._add_hands(rgb, body)
        return Keypoints(face, body, len(faces), self.name)

    def _add_hands(self, rgb: np.ndarray, body: np.ndarray) -> None:
        """Fill the hand rows of ``body`` (visibility 1 for each hand found)."""
        assert self._hands is not None
        h, w = rgb.shape[:2]
        res = self._hands.process(rgb)
        for marks in res.multi_hand_landmarks or []:
            pts = np.array([(p.x * w, p.y * h, 1.0) for p in marks.landmark], np.float32)
            # the side of the nearer pose wrist (the hand model's own left/right label assumes a
            # mirrored selfie image)
            near_left = np.hypot(*(pts[0, :2] - body[15, :2])) <= np.hypot(*(pts[0, :2] - body[16, :2]))
            rows = HAND_ROWS["left" if near_left else "right"]
            if body[rows[0], 2] == 0:
                body[rows] = pts

    def close(self) -> None:
        self._face.close()
        if self._pose is not None:
            self._pose.close()
        if self._hands is not None:
            self._hands.close()


# --- dlib -------------------------------------------------------------------------------------


def dlib_model_path() -> str:
    """Path of the 68-point predictor inside the ``face-recognition-models`` package (not imported:
    its ``__init__`` needs pkg_resources, which recent setuptools no longer ship)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("jumpcut: package face-recognition-models is not installed (dlib 68-point model)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", "shape_predictor_68_face_landmarks.dat")
    if not os.path.exists(path):
        raise ModelError(f"jumpcut: dlib landmark model {path} is missing")
    return path


# 68-point groups (iBUG 300-W order).
DLIB_GROUPS = {
    "oval": np.arange(0, 17),
    "brows": np.arange(17, 27),
    "eyes": np.arange(36, 48),
    "lips": np.arange(48, 68),
}


class DlibDetector(KeypointDetector):
    """dlib frontal face detector (HOG) + 68-point shape predictor; face only, no body."""

    name = "dlib"

    def __init__(self, upsample: int = 0):
        try:
            import dlib
        except Exception as exc:
            raise ModelError(f"jumpcut: dlib unavailable ({exc})") from exc
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(dlib_model_path())
        self._upsample = upsample
        template = eye_aligned(_template("dlib", None), DLIB_GROUPS["eyes"])
        self.topology = FaceTopology(_delaunay(template), template, dict(DLIB_GROUPS))

    def detect(self, rgb: np.ndarray) -> Keypoints:
        rgb = np.ascontiguousarray(rgb)
        dets = list(self._detector(rgb, self._upsample))
        if not dets:
            return Keypoints(None, None, 0, self.name)
        det = max(dets, key=lambda r: r.width() * r.height())
        shape = self._predictor(rgb, det)
        pts = np.array([(shape.part(i).x, shape.part(i).y, 0.0) for i in range(68)], np.float32)
        return Keypoints(pts, None, len(dets), self.name)


def _delaunay(points: np.ndarray) -> np.ndarray:
    """Delaunay triangles of a 2D point set, as indices."""
    from scipy.spatial import Delaunay

    return Delaunay(points[:, :2]).simplices.astype(np.int32)


def make_detector(name: str = "auto", video_mode: bool = False, with_body: bool = True) -> KeypointDetector:
    """A detector by name: ``mediapipe``, ``dlib`` or ``auto`` (MediaPipe, else dlib)."""
    if name in ("auto", "mediapipe"):
        try:
            return MediaPipeDetector(video_mode=video_mode, with_body=with_body)
        except ModelError as exc:
            if name == "mediapipe":
                raise
            log.warning("jumpcut: %s; falling back to dlib 68-point landmarks", exc)
    if name in ("auto", "dlib"):
        return DlibDetector()
    raise ModelError(f"jumpcut: unknown keypoint detector {name!r} (mediapipe, dlib, auto)")


# --- sequences --------------------------------------------------------------------------------


def smooth_sequence(kps: list[Keypoints], sigma: float = 1.0, segments: list[int] | None = None) -> list[Keypoints]:
    """Temporal Gaussian smoothing of face and body points, never across a cut.

    ``segments``: frame indices where a new shot starts (cuts); smoothing stays within shots.
    Frames without a face keep ``None``; they neither contribute nor receive smoothed values.
    """
    if sigma <= 0 or not kps:
        return list(kps)
    radius = max(1, int(round(2.5 * sigma)))
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    bounds = sorted({0, len(kps), *[c for c in (segments or []) if 0 < c < len(kps)]})
    out = list(kps)
    for start, end in zip(bounds[:-1], bounds[1:]):
        for attr in ("face", "body"):
            for t in range(start, end):
                if getattr(kps[t], attr) is None:
                    continue
                acc, wsum = 0.0, 0.0
                for o, wt in zip(offsets, weights):
                    s = t + o
                    if (
                        start <= s < end
                        and getattr(kps[s], attr) is not None
                        and getattr(kps[s], attr).shape == getattr(kps[t], attr).shape
                    ):
                        acc = acc + wt * getattr(kps[s], attr)
                        wsum += wt
                new = acc / wsum
                if attr == "face":
                    out[t] = Keypoints(new.astype(np.float32), out[t].body, out[t].num_faces, out[t].detector)
                else:
                    out[t] = Keypoints(out[t].face, new.astype(np.float32), out[t].num_faces, out[t].detector)
    return out


def build_template(detector: KeypointDetector, frames: list[np.ndarray]) -> np.ndarray:
    """Mean shape of the detector's face points over ``frames`` (similarity-normalised, 2D).

    Used once to make the shipped ``face_template_<name>.npy`` files.
    """
    shapes = []
    for f in frames:
        k = detector.detect(f)
        if k.face is not None:
            shapes.append(normalize_shape(k.face))
    if not shapes:
        raise ModelError("jumpcut: no face found while building a template")
    ref = shapes[0]
    aligned = []
    for s in shapes:  # rotate onto the first shape (2D Procrustes)
        u, _, vt = np.linalg.svd(s.T @ ref)
        aligned.append(s @ (u @ vt))
    return np.mean(aligned, 0).astype(np.float32)
