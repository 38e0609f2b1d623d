"""Jump-cut detection from the signals a removed segment leaves in a talking head.

A cut at frame ``k`` (``k`` = first frame after the cut) joins frame ``k-1`` to a frame that was
2..60+ frames later in the take. What changes at that one step, *relative to the motion around
it* (each signal is divided by its own local level, so the rule does not depend on frame rate,
resolution or how much the person moves):

- ``diff``: mean absolute change of a 96x96 grey thumbnail (the old ``cuts.detect_cuts`` signal);
- ``resid``: what DIS optical flow (``vidfx.ops.flow.DISFlow``) cannot explain: the thumbnail of
  ``k`` against ``k-1`` warped by the flow (a mouth that opens smoothly is explained by flow, a
  mouth that jumps from closed to open is not); ``cells``: the same per cell of a 4x4 grid;
- ``flow``: mean flow magnitude (a head that jumps to a new place);
- ``expr``: MediaPipe face-mesh change (``keypoints.MediaPipeDetector``) left after removing a 2-D
  similarity, in face sizes: an expression (mouth, eyes, brows) that jumps;
- ``audio``: log-spectral distance between the 64 ms of sound before and after the boundary,
  where the clip has sound (silent or missing audio gives no evidence either way);
- ``splice``: how much a linear predictor of the waveform (``splice_jump``), fitted on the 30 ms
  before the boundary, is surprised by the first samples after it, relative to its error just
  before (and the same backwards in time): a hard audio splice breaks the waveform; speech and
  music that flow on are predictable across a frame boundary.

Each signal gives three log ratios (``local_ratios``: to the larger neighbouring step, to the
median over +-WINDOW steps, to the largest over +-WIDE), ``cells`` the median and upper quartile
of those over its cells; steps into a repeated frame are left out; a missing face or silent
audio gives 0 (no evidence). The features go through a logistic model (``WEIGHTS``) fitted on
simulated cuts of the **train identities** only (``TRAIN_IDS``, each clip also after the
frame-rate changes ``AUGMENT``; see ``fit``), and a cut is declared where

    score = RATIO * exp(w . f + b - THRESHOLD) >= sensitivity

and the score is the largest within +-NMS frames (one cut per step). ``THRESHOLD`` was chosen on
the train identities too (leave-one-identity-out, <= 1 false cut per minute of their uncut
clips), so the validation identities (``VAL_IDS``) stay unseen until the final numbers. Any
thumbnail change > ``cuts.HARD_DIFF`` grey levels is always a cut (a scene change).
``sensitivity`` (default ``cuts.RATIO`` = 3.5): higher = fewer cuts.

Feature choice, by out-of-identity recall on the train identities at <= 1 false cut/min: the
``splice`` signal raised it from 0.57 to 0.64 (0.67 with L2 ``FIT_L2``); face-mesh displacement,
constant-velocity error and per-point ratios added nothing that generalised to a held-out person
(0.66 with them vs 0.71 without, before the frame-rate augmentation), nor did a face-crop
thumbnail or a small MLP, so they are left out. Simulated cuts take their sound through
``ExportedAudio`` (one AAC generation, as an exported edit), or the splice would be judged on
a sharper break than a user's file holds.

A decision at ``k`` looks only at frames ``k-REACH .. k+REACH`` (streaming in the node).
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np

from vidfx.ops.colour import grey_u8
from vidfx.ops.flow import DISFlow

from .cuts import HARD_DIFF, RATIO
from .identities import DATA_ROOT, TRAIN_IDS, clip_path

log = logging.getLogger("vidfx.jumpcut")

WORK_SIDE = 384  # frames are decoded/downscaled so that the longer side is at most this
THUMB = 96
AUDIO_RATE = 16000
AUDIO_WIN = 1024  # samples each side of a boundary (64 ms)
WINDOW = 6  # local level: median over +-WINDOW frames
WIDE = 12  # largest step over +-WIDE frames (periodic dropped frames of a frame-rate conversion)
DUP_FRAC = 0.15  # a step below this share of the usual change is a repeated frame
NMS = 2  # one cut within +-NMS frames
REACH = WIDE + 3 + NMS + 1  # frames each side a decision needs
SPLICE_FIT = 480  # samples (30 ms) the waveform predictor is fitted on, each side of a boundary
SPLICE_ORDER = 20  # its order
SPLICE_LEN = 4  # samples after the boundary it is judged on (0.25 ms)
SPLICE_BASE = 160  # samples before the boundary its usual error is measured on (10 ms)
SPLICE_QUIET = 1e-3  # RMS below which a side is too quiet to judge (-60 dBFS)
SIGNALS = ("diff", "resid", "flow", "expr", "audio", "splice")
EPS = {
    "diff": 0.3,
    "resid": 0.3,
    "flow": 0.05,
    "expr": 0.001,
    "audio": 0.5,
    "splice": 0.1,
    "cells": 0.3,
}
KINDS = ("near", "med", "max")
MULTI = ("cells",)  # per-channel signals: image grid cells
GRID = 4
FEATURES = tuple(f"{s}_{w}" for s in SIGNALS for w in KINDS) + tuple(
    f"{s}_{w}_{a}" for s in MULTI for w in KINDS for a in ("median", "q75")
)

# Real edits in the "uncut" source clips, found by looking at frames k-1 and k of the strongest
# detections on all clips: not false cuts, and left out of the fitting's negatives.
SOURCE_CUTS = {
    "talking_more/EAMM_disgusted": (148,),  # bared teeth -> closed lips in one frame
    "talking_more/LatentSync_demo3_video": (271,),  # hands in lap -> hands on chest
    "talking_more/LivePortrait_d10": (446,),  # gaze aside -> brows raised, new head pose
}

# Fitted by ``python -m vidfx.jumpcut.detect fit`` on TRAIN_IDS (see docs/jumpcut.md).
WEIGHTS = {
    "diff_near": 0.4732,
    "diff_med": 0.4197,
    "diff_max": 0.4911,
    "resid_near": 0.5222,
    "resid_med": 0.4927,
    "resid_max": 0.4758,
    "flow_near": 0.0181,
    "flow_med": 0.1592,
    "flow_max": 0.2278,
    "expr_near": 0.3269,
    "expr_med": 0.3360,
    "expr_max": -0.2410,
    "audio_near": 0.2545,
    "audio_med": 0.3168,
    "audio_max": -0.2059,
    "splice_near": 0.1816,
    "splice_med": 0.5552,
    "splice_max": 0.6248,
    "cells_near_median": 0.5219,
    "cells_near_q75": 0.8613,
    "cells_med_median": 0.7171,
    "cells_med_q75": 0.9148,
    "cells_max_median": 0.5312,
    "cells_max_q75": 0.7703,
}
BIAS = -1.4690
THRESHOLD = 4.0000


# --- per-frame data ---------------------------------------------------------------------------


@dataclass
class ClipData:
    """What detection needs of each frame: a grey thumbnail and face-mesh points (NaN: no face),
    plus the clip's mono audio (or None) and frame rate."""

    thumbs: np.ndarray  # (T, THUMB, THUMB) uint8
    faces: np.ndarray  # (T, 478, 2) float32, pixels of the work-size frame; NaN where no face
    audio: np.ndarray | None  # (S,) float32 mono at AUDIO_RATE from the start of thumbs[0], or None
    fps: float
    first: int = 0  # the clip's frame number of thumbs[0] (a streaming window): sound timing

    def __len__(self) -> int:
        return len(self.thumbs)


def work_size(w: int, h: int) -> tuple[int, int]:
    """Frame size for detection: longer side at most ``WORK_SIDE``, even sizes."""
    s = min(1.0, WORK_SIDE / max(w, h))
    return max(2, int(round(w * s / 2)) * 2), max(2, int(round(h * s / 2)) * 2)


class FrameAnalyser:
    """Thumbnail + face mesh of one (already downscaled) RGB uint8 frame."""

    def __init__(self):
        from vidfx.core.errors import ModelError

        from .keypoints import MediaPipeDetector

        try:
            self.det = MediaPipeDetector(video_mode=False, with_body=False, max_faces=1)
        except ModelError as exc:  # detection goes on with the image signals only
            log.warning("jumpcut: cut detection without face keypoints (%s)", exc)
            self.det = None

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = rgb.shape[:2]
        ws = work_size(w, h)
        if (w, h) != ws:
            rgb = cv2.resize(rgb, ws, interpolation=cv2.INTER_AREA)
        thumb = cv2.resize(grey_u8(rgb), (THUMB, THUMB), interpolation=cv2.INTER_AREA)
        face = self.det.detect(rgb).face if self.det is not None else None
        pts = np.full((478, 2), np.nan, np.float32) if face is None else face[:, :2].astype(np.float32)
        return thumb, pts

    def close(self) -> None:
        if self.det is not None:
            self.det.close()


def decode_audio(path: str, start: float = 0.0) -> np.ndarray | None:
    """The first audio stream as mono float32 at ``AUDIO_RATE`` from ``start`` seconds on the
    file's timeline (give the first video frame's time: the ``splice`` signal needs sound and
    pictures lined up to the sample; silence fills in where the sound starts later). None: no
    audio stream."""
    from vidfx.io.probe import open_input

    with open_input(path) as container:
        if not container.streams.audio:
            return None
        audio, first = _decode_mono(container, path)
    if audio is None:
        return None
    shift = int(round((first - start) * AUDIO_RATE))  # > 0: the sound starts later
    return np.concatenate([np.zeros(shift, np.float32), audio]) if shift > 0 else audio[-shift:]


def _decode_mono(container, name: str) -> tuple[np.ndarray | None, float]:
    """The first audio stream of an open container as mono float32 at ``AUDIO_RATE`` (None: no
    samples), and the time of its first sample on the file's timeline. Decoding stops, with a
    warning, at damaged data."""
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE)
    chunks = []
    first: float | None = None
    try:
        for frame in container.decode(audio=0):
            if first is None:
                first = float(frame.time) if frame.time is not None else 0.0
            chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]
        chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    except av.FFmpegError as exc:
        log.warning("jumpcut: %s: audio decoding stopped (%s)", name, exc)
    return (np.concatenate(chunks).astype(np.float32) if chunks else None), first or 0.0


def load_clip(path: str, cache_dir: str | None = "/tmp/vidfx_jumpcut_detect") -> ClipData:
    """Decode a clip (PyAV halves very large frames while converting, so 1080x1920 HEVC stays
    cheap) and compute its per-frame data; cached as ``.npz`` under ``cache_dir`` (keyed by path, size, mtime)."""
    from vidfx.core.errors import MediaError
    from vidfx.io.probe import open_input, stream_rate

    st = os.stat(path)
    key = f"{os.path.abspath(path)}:{st.st_size}:{st.st_mtime}:{WORK_SIDE}:{THUMB}:3"
    key = hashlib.sha1(key.encode()).hexdigest()
    cache = os.path.join(cache_dir, key[:16] + ".npz") if cache_dir else None
    if cache and os.path.exists(cache):
        z = np.load(cache)
        audio = z["audio"] if z["audio"].size else None
        return ClipData(z["thumbs"], z["faces"], audio, float(z["fps"]))
    analyser = FrameAnalyser()
    thumbs, faces = [], []
    start: float | None = None  # the first frame's time: the sound is lined up with it
    try:
        with open_input(path) as container:
            if not container.streams.video:
                raise MediaError(f"{path}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            fps = float(stream_rate(stream, path))
            for frame in container.decode(video=0):
                if start is None:
                    start = float(frame.time) if frame.time is not None else 0.0
                # PyAV halves big frames (1080x1920 HEVC) while converting; the analyser then
                # scales with INTER_AREA exactly as for in-memory frames (node, tests)
                w, h = frame.width, frame.height
                while max(w, h) >= 4 * WORK_SIDE:
                    w, h = w // 2, h // 2
                t, p = analyser(frame.to_ndarray(format="rgb24", width=w, height=h))
                thumbs.append(t)
                faces.append(p)
    finally:
        analyser.close()
    if not thumbs:
        raise MediaError(f"jumpcut: {path} has no decodable video frames")
    data = ClipData(np.stack(thumbs), np.stack(faces), decode_audio(path, start or 0.0), fps)
    if cache:
        os.makedirs(cache_dir, exist_ok=True)
        tmp = cache + ".tmp.npz"
        audio = data.audio if data.audio is not None else np.zeros(0, np.float32)
        np.savez(tmp, thumbs=data.thumbs, faces=data.faces, audio=audio, fps=data.fps)
        os.replace(tmp, cache)
    return data


def clip_data_from_frames(frames: list[np.ndarray], fps: float | Fraction, audio: np.ndarray | None = None) -> ClipData:
    """``ClipData`` of in-memory RGB frames (uint8, or float 0..1)."""
    analyser = FrameAnalyser()
    try:
        out = [
            analyser(f if f.dtype == np.uint8 else np.clip(f * 255.0 + 0.5, 0, 255).astype(np.uint8)) for f in frames
        ]
    finally:
        analyser.close()
    return ClipData(np.stack([o[0] for o in out]), np.stack([o[1] for o in out]), audio, float(fps))


# --- signals ----------------------------------------------------------------------------------


class PairCache:
    """Image-pair signals of one clip, by (frame a, frame b): thumbnail difference, flow
    residual, flow magnitude, and the flow residual in each cell of a GRID x GRID grid."""

    def __init__(self, data: ClipData):
        self.data = data
        self.flow = DISFlow("fast")
        self.store: dict[tuple[int, int], np.ndarray] = {}
        ys, xs = np.mgrid[0:THUMB, 0:THUMB].astype(np.float32)
        self.grid = (xs, ys)

    def __call__(self, a: int, b: int) -> np.ndarray:
        key = (a, b)
        if key not in self.store:
            ta, tb = self.data.thumbs[a], self.data.thumbs[b]
            diff = float(np.abs(ta.astype(np.float32) - tb).mean())
            f = self.flow(tb, ta)  # tb(p) ~ ta(p + f(p))
            warped = cv2.remap(
                ta,
                self.grid[0] + f[..., 0],
                self.grid[1] + f[..., 1],
                cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REPLICATE,
            )
            m = 4  # ignore the border (content entering the frame)
            res = np.abs(warped.astype(np.float32) - tb)[m:-m, m:-m]
            c = res.shape[0] // GRID
            cells = res[: c * GRID, : c * GRID].reshape(GRID, c, GRID, c).mean(axis=(1, 3)).reshape(-1)
            mag = float(np.linalg.norm(f, axis=2).mean())
            self.store[key] = np.concatenate([[diff, float(res.mean()), mag], cells])
        return self.store[key]


def _similarity_residual(a: np.ndarray, b: np.ndarray) -> float:
    """Mean distance of ``b`` to the best 2-D similarity transform of ``a`` (Umeyama)."""
    ma, mb = a.mean(0), b.mean(0)
    a0, b0 = a - ma, b - mb
    cov = b0.T @ a0 / len(a)
    u, s, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u @ vt))
    dm = np.diag([1.0, d])
    r = u @ dm @ vt
    var = (a0**2).sum() / len(a)
    scale = (s * np.diag(dm)).sum() / max(var, 1e-9)
    fit = scale * a0 @ r.T
    return float(np.linalg.norm(fit - b0, axis=1).mean())


def _expression_signal(faces: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Face-mesh change left after a 2-D similarity (expression), in face sizes, along the frame
    sequence ``idx`` (NaN where a face is missing)."""
    p = faces[idx][:, ::3].astype(np.float64)  # every 3rd mesh point is plenty
    n = len(idx)
    size = np.sqrt(np.ptp(p[..., 0], axis=1) * np.ptp(p[..., 1], axis=1))  # face size in pixels
    expr = np.full(n, np.nan)
    for k in range(1, n):
        if np.isfinite(size[k]) and np.isfinite(size[k - 1]):  # a face in both frames
            expr[k] = _similarity_residual(p[k - 1], p[k]) / max(size[k], size[k - 1])
    return expr


def _band_spectrum(x: np.ndarray) -> np.ndarray | None:
    """Log power in 24 log-spaced bands of a Hann-windowed chunk (None: near-silent)."""
    if len(x) < AUDIO_WIN or float(np.sqrt(np.mean(x**2))) < 1e-4:
        return None
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    edges = np.unique(np.geomspace(4, len(spec) - 1, 25).astype(int))
    bands = np.add.reduceat(spec, edges)[:-1]
    return 10 * np.log10(bands + 1e-10)


def _predictor(x: np.ndarray) -> np.ndarray:
    """Linear-prediction filter ``[1, -a1, .., -ap]`` of order ``SPLICE_ORDER`` fitted on ``x``
    (autocorrelation method, Hann window): convolved with a signal it gives the prediction error."""
    w = (x * np.hanning(len(x))).astype(np.float64)
    r = np.array([w[: len(w) - lag] @ w[lag:] for lag in range(SPLICE_ORDER + 1)])
    r[0] = r[0] * (1 + 1e-6) + 1e-12  # a little white noise keeps the system well posed
    lags = np.abs(np.subtract.outer(np.arange(SPLICE_ORDER), np.arange(SPLICE_ORDER)))
    a = np.linalg.solve(r[lags], r[1:])
    return np.concatenate([[1.0], -a])


def _surprise(before: np.ndarray, after: np.ndarray) -> float:
    """Prediction error energy on the first ``SPLICE_LEN`` samples of ``after`` over that on the
    last ``SPLICE_BASE`` samples of ``before``, the predictor fitted on ``before``."""
    y = np.concatenate([before, after[:SPLICE_LEN]]).astype(np.float64)
    e = np.convolve(y, _predictor(before), "valid")  # e[i]: error on sample i + SPLICE_ORDER
    n = len(before) - SPLICE_ORDER  # the first sample after the boundary
    base = float(np.mean(e[n - SPLICE_BASE : n] ** 2))
    return float(np.mean(e[n:] ** 2)) / (base + 1e-12)


def splice_jump(before: np.ndarray, after: np.ndarray) -> float:
    """How much a boundary breaks the waveform: the smaller of the forward and backward
    ``_surprise`` (about 0.5 where sound flows on; at a splice about 10 after an AAC export and
    up to 1000 before it); NaN when either side is
    shorter than ``SPLICE_FIT`` or quieter than ``SPLICE_QUIET`` (no evidence).

    Shape: ``before``, ``after`` (S,) mono samples ending / starting at the boundary."""
    b, a = before[-SPLICE_FIT:], after[:SPLICE_FIT]
    if len(b) < SPLICE_FIT or len(a) < SPLICE_FIT:
        return float("nan")
    if float(np.sqrt(np.mean(b**2))) < SPLICE_QUIET or float(np.sqrt(np.mean(a**2))) < SPLICE_QUIET:
        return float("nan")
    return min(_surprise(b, a), _surprise(a[::-1], b[::-1]))


def aac_generation(audio: np.ndarray, bitrate: int = 64000, rate: int = 48000) -> np.ndarray:
    """``audio`` (mono, ``AUDIO_RATE``) after one AAC encode/decode at ``rate`` and ``bitrate``:
    what exporting an edit does to its sound (same length, no delay).

    Simulated cuts splice the decoded sound; a real edit is exported again, and the encoder's
    low-pass and quantisation soften a splice. Evaluation and fitting put every simulated clip
    (cut or not) through one generation so that the ``splice`` signal is judged on what a user's
    file holds."""
    import io

    import av

    if len(audio) < 1024:  # too short to encode (and to judge)
        return audio.astype(np.float32)
    frame = av.AudioFrame.from_ndarray(audio.reshape(1, -1).astype(np.float32), format="flt", layout="mono")
    frame.sample_rate, frame.pts = AUDIO_RATE, 0
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=rate, layout="mono")
        stream.bit_rate = bitrate
        up = av.AudioResampler(format="fltp", layout="mono", rate=rate)
        for f in up.resample(frame) + up.resample(None):
            out.mux(stream.encode(f))
        out.mux(stream.encode(None))
    buf.seek(0)
    with av.open(buf) as inp:
        decoded, _ = _decode_mono(inp, "AAC generation")
    y = np.zeros(0, np.float32) if decoded is None else decoded[: len(audio)]
    return np.pad(y, (0, len(audio) - len(y)))


EXPORT_PAD = 4000  # samples (0.25 s) of sound each side of a simulated splice that are re-encoded


class ExportedAudio:
    """A clip's sound as an exported edit of it holds it (simulation only): the uncut sound
    after one ``aac_generation``, and each splice (sound up to ``t0`` joined to sound from
    ``t1``) made from the clip's own decoded sound (``source``, not ``track``) and then put
    through its own generation: one generation either way."""

    def __init__(self, audio: np.ndarray):
        self.source = audio
        self.track = aac_generation(audio)

    def excerpt(self, t0: int, t1: int, win: int) -> tuple[np.ndarray, np.ndarray]:
        """``win`` samples before and after the boundary (sample ``t0`` joined to ``t1``)."""
        if t0 == t1:
            return self.track[max(0, t0 - win) : t0], self.track[t1 : t1 + win]
        pad = max(win, EXPORT_PAD)
        left, right = self.source[max(0, t0 - pad) : t0], self.source[t1 : t1 + pad]
        if len(left) < SPLICE_FIT or len(right) < SPLICE_FIT:  # at the sound's ends: no evidence
            return left[-win:], right[:win]
        y = aac_generation(np.concatenate([left, right]))
        n = len(left)
        return y[max(0, n - win) : n], y[n : n + win]


def _audio_signals(
    audio: np.ndarray | None,
    fps: float,
    idx: np.ndarray,
    follows: np.ndarray | None = None,
    exported: ExportedAudio | None = None,
    first: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(spectral distance dB, ``splice_jump``) across each frame boundary of the sequence ``idx``.

    The sound of step ``k`` runs up to the start of source frame ``follows[k]`` (default
    ``idx[k-1] + 1``: the frame after) and goes on from the start of ``idx[k]``: a splice where
    they differ. ``exported``: take the sound from this simulated export instead of ``audio``.
    ``first``: the clip's frame number of frame 0 of ``idx``, where ``audio`` starts (sample
    positions are rounded as the whole clip's are, so a streaming window sees the same samples)."""
    n = len(idx)
    spec, jump = np.full(n, np.nan), np.full(n, np.nan)
    if audio is None:
        return spec, jump
    origin = int(round(first / fps * AUDIO_RATE))
    for k in range(1, n):
        nxt = idx[k - 1] + 1 if follows is None else follows[k]
        t0 = int(round((first + nxt) / fps * AUDIO_RATE)) - origin  # end of the sound before the boundary
        t1 = int(round((first + idx[k]) / fps * AUDIO_RATE)) - origin  # start of the sound after it
        if exported is not None:
            before, after = exported.excerpt(t0, t1, AUDIO_WIN)
        else:
            before, after = audio[max(0, t0 - AUDIO_WIN) : t0], audio[t1 : t1 + AUDIO_WIN]
        a, b = _band_spectrum(before), _band_spectrum(after)
        if a is not None and b is not None:
            spec[k] = float(np.abs(a - b).mean())
        jump[k] = splice_jump(before, after)
    return spec, jump


def raw_signals(
    data: ClipData,
    idx: np.ndarray,
    pairs: PairCache | None = None,
    follows: np.ndarray | None = None,
    exported: ExportedAudio | None = None,
) -> dict[str, np.ndarray]:
    """Every signal at each step of the frame sequence ``idx`` (entry k: step idx[k-1] -> idx[k];
    entry 0 is NaN). Scalar signals are (n,), ``cells`` is (n, GRID*GRID). ``follows`` and
    ``exported``: the sound of simulated sequences (``_audio_signals``)."""
    idx = np.asarray(idx)
    pairs = pairs or PairCache(data)
    n = len(idx)
    img = np.full((n, 3 + GRID * GRID), np.nan)
    for k in range(1, n):
        img[k] = pairs(int(idx[k - 1]), int(idx[k]))
    spec, jump = _audio_signals(data.audio, data.fps, idx, follows, exported, data.first)
    sig = {
        "diff": img[:, 0],
        "resid": img[:, 1],
        "flow": img[:, 2],
        "expr": _expression_signal(data.faces, idx),
        "audio": spec,
        "splice": jump,
        "cells": img[:, 3:],
    }
    # Repeated frames (a clip converted up to a higher frame rate) are not steps: the step after
    # one spans two frame times and must not stand out against a ~0 step next to it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        level = np.nanpercentile(_windows(img[:, :1], WIDE), 75, axis=2)[:, 0]
    held = img[:, 0] < DUP_FRAC * level
    for v in sig.values():
        v[held] = np.nan
    return sig


def _windows(x: np.ndarray, half: int) -> np.ndarray:
    """(n, C, 2*half+1) values of x (n, C) at k-half..k+half (NaN outside, and at |j-k| <= 1)."""
    n, c = x.shape
    pad = np.full((n + 2 * half, c), np.nan)
    pad[half : half + n] = x
    w = np.lib.stride_tricks.sliding_window_view(pad, 2 * half + 1, axis=0).copy()  # (n, C, 2h+1)
    w[:, :, half - 1 : half + 2] = np.nan
    return w


def local_ratios(r: np.ndarray, e: float) -> np.ndarray:
    """(n, C, 3) log ratios of each step to its neighbours (``near``: the larger of k-1, k+1),
    to the median over +-WINDOW (``med``) and to the largest step over +-WIDE (``max``),
    leaving out k-1..k+1. NaN where undefined."""
    r = r.reshape(len(r), -1).astype(np.float64)
    r = np.where(np.arange(len(r))[:, None] == 0, np.nan, r)  # step 0 does not exist
    n = len(r)
    lr = np.log(r + e)
    prev = np.vstack([np.full((1, r.shape[1]), np.nan), r[:-1]])
    nxt = np.vstack([r[1:], np.full((1, r.shape[1]), np.nan)])
    out = np.full((n, r.shape[1], 3), np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out[..., 0] = lr - np.log(np.fmax(prev, nxt) + e)
        out[..., 1] = lr - np.log(np.nanmedian(_windows(r, WINDOW), axis=2) + e)
        out[..., 2] = lr - np.log(np.nanmax(_windows(r, WIDE), axis=2) + e)
    return out


def features(sig: dict[str, np.ndarray]) -> np.ndarray:
    """(n, len(FEATURES)) local log-ratio features; 0 where a signal is missing.

    Scalar signals: their ``near``/``med``/``max`` ratios. ``cells`` (image grid cells): the
    median and upper quartile over channels of each ratio (a cut changes
    everything at once; talking moves only some of it)."""
    cols = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for name in SIGNALS:
            q = local_ratios(sig[name], EPS[name])[:, 0, :]
            cols += [q[:, i] for i in range(len(KINDS))]
        for name in MULTI:
            q = local_ratios(sig[name], EPS[name])
            for i in range(len(KINDS)):
                cols += [np.nanmedian(q[:, :, i], axis=1), np.nanpercentile(q[:, :, i], 75, axis=1)]
    return np.nan_to_num(np.stack(cols, 1), nan=0.0, posinf=0.0, neginf=0.0)


def weight_vector(weights: dict[str, float] | None = None) -> np.ndarray:
    w = weights or WEIGHTS
    return np.array([w.get(f, 0.0) for f in FEATURES])


def scores(
    sig: dict[str, np.ndarray], weights: dict | None = None, bias: float | None = None, threshold: float | None = None
) -> np.ndarray:
    """Cut score per step (``RATIO`` at the fitted threshold, higher = more cut-like; 0 at k=0)."""
    z = features(sig) @ weight_vector(weights) + (BIAS if bias is None else bias)
    return _score_from_z(z, sig["diff"], THRESHOLD if threshold is None else threshold)


def pick(score: np.ndarray, sensitivity: float = RATIO) -> list[int]:
    """Steps whose score reaches ``sensitivity`` and is the largest within +-NMS."""
    cuts = []
    n = len(score)
    for k in range(1, n):
        if score[k] < sensitivity:
            continue
        left = score[max(1, k - NMS) : k]
        right = score[k + 1 : k + NMS + 1]
        if (left.size and left.max() >= score[k]) or (right.size and right.max() > score[k]):
            continue
        cuts.append(k)
    return cuts


def decide_in_window(
    thumbs: list[np.ndarray],
    faces: list[np.ndarray],
    pos: int,
    fps: float,
    audio: np.ndarray | None = None,
    sensitivity: float = RATIO,
    first: int = 0,
) -> bool:
    """Whether the step into frame ``pos`` of a run of frames is a cut (streaming: the run is
    frames ``k-REACH .. k+REACH`` of a clip, clipped at its ends; ``audio`` starts at the run's
    first frame, ``first``). Same decision as the whole-clip detector."""
    data = ClipData(np.stack(thumbs), np.stack(faces), audio, float(fps), first)
    return pos in pick(scores(raw_signals(data, np.arange(len(thumbs)))), sensitivity)


def detect_in_data(data: ClipData, sensitivity: float = RATIO, idx: np.ndarray | None = None) -> list[int]:
    """Cuts (positions in ``idx``, default the whole clip) of a clip's data."""
    idx = np.arange(len(data)) if idx is None else np.asarray(idx)
    return pick(scores(raw_signals(data, idx)), sensitivity)


def detect_cuts_in_frames(
    frames: list[np.ndarray], fps: float | Fraction, audio: np.ndarray | None = None, sensitivity: float = RATIO
) -> list[int]:
    """Jump cuts in RGB frames (uint8 or float 0..1); ``audio`` mono float32 at ``AUDIO_RATE``
    starting with the first frame, or None."""
    if len(frames) < 2:
        return []
    return detect_in_data(clip_data_from_frames(frames, fps, audio), sensitivity)


def detect_cuts_in_file(path: str, sensitivity: float = RATIO, cache_dir: str | None = None) -> list[int]:
    """Jump cuts of a video file (video + its audio)."""
    return detect_in_data(load_clip(path, cache_dir), sensitivity)


# --- simulated cuts (evaluation and fitting) ---------------------------------------------------

CASE_HALF = 12  # a case is judged on the steps within +-CASE_HALF of its cut


def case_starts(
    num_frames: int, length: int, cases: int, rng: np.random.Generator, avoid: tuple[int, ...] = ()
) -> list[int]:
    """First removed frame of each simulated cut: random, leaving ``REACH + 2`` real frames on
    each side (none if the clip is too short for this length), and away from the clip's own
    edits ``avoid`` (so that a case is judged on its own cut)."""
    lo, hi = REACH + 2, num_frames - length - REACH - 2
    margin = CASE_HALF + REACH
    ok = [s for s in range(lo, hi + 1) if all(not (s - margin <= a <= s + length + margin) for a in avoid)]
    if not ok:
        return []
    return sorted(int(ok[i]) for i in rng.integers(0, len(ok), size=cases))


def case_window(num_frames: int, start: int, length: int) -> tuple[np.ndarray, int]:
    """Frames of a simulated cut (frames ``start .. start+length-1`` removed) that the decisions
    within +-CASE_HALF of the cut look at, and the index of the cut in them: detections there
    equal the whole-clip detector's on the cut clip."""
    spliced = np.concatenate([np.arange(0, start), np.arange(start + length, num_frames)])
    lo = max(0, start - CASE_HALF - REACH)
    hi = min(len(spliced), start + CASE_HALF + REACH + 1)
    return spliced[lo:hi], start - lo


def false_cuts(identity: str, cuts: list[int]) -> list[int]:
    """Detections on an uncut clip that are not one of its ``SOURCE_CUTS`` (+-1 frame)."""
    known = SOURCE_CUTS.get(identity, ())
    return [k for k in cuts if all(abs(k - c) > 1 for c in known)]


def judge(cuts: list[int], c: int) -> tuple[bool, int]:
    """(found within +-1, false detections within +-CASE_HALF) of one simulated cut at ``c``."""
    near = [k for k in cuts if abs(k - c) <= CASE_HALF]
    hit = [k for k in near if abs(k - c) <= 1]
    return bool(hit), len(near) - min(1, len(hit))


# --- fitting ------------------------------------------------------------------------------------

FIT_LENGTHS = (2, 3, 4, 6, 8, 12, 18, 25, 40, 60)
FIT_CASES = 6
FIT_SEED = 1000  # the evaluation uses other seeds
TARGET_FALSE_PER_MIN = 1.0  # out-of-identity, on the train identities' uncut clips
# L2 penalty of the logistic fit, chosen like the threshold, on the train identities only: the
# highest out-of-identity recall at <= 1 false cut/min over 0.3 .. 10000 (0.642 at 1, 0.657 at
# 100, 0.667 at 1000, 0.662 at 3000): strong shrinkage generalises better to a new person.
FIT_L2 = 1000.0


def logistic_fit(x: np.ndarray, y: np.ndarray, sw: np.ndarray, l2: float = 1.0, iters: int = 50) -> np.ndarray:
    """Weighted L2-regularised logistic regression by Newton's method; returns (w..., b)."""
    xb = np.concatenate([x, np.ones((len(x), 1))], 1)
    beta = np.zeros(xb.shape[1])
    reg = np.full(xb.shape[1], l2)
    reg[-1] = 0.0
    for _ in range(iters):
        p = 1 / (1 + np.exp(-np.clip(xb @ beta, -30, 30)))
        g = xb.T @ (sw * (p - y)) + reg * beta
        h = (xb * (sw * p * (1 - p))[:, None]).T @ xb + np.diag(reg + 1e-9)
        step = np.linalg.solve(h, g)
        beta -= step
        if np.abs(step).max() < 1e-6:
            break
    return beta


# Frame-rate changes applied to the train clips to make more training footage (the clips people
# upload have been through them): every 2nd frame (half rate, e.g. 12 fps), 1 in 6 frames dropped
# (30 -> 25 fps), every 4th frame shown twice (up-conversion).
AUGMENT = ("", "half", "drop6", "dup4")


def augment_frames(num_frames: int, kind: str) -> np.ndarray:
    """Frame numbers of a clip after one of the ``AUGMENT`` frame-rate changes."""
    a = np.arange(num_frames)
    if kind == "half":
        return a[::2]
    if kind == "drop6":
        return a[a % 6 != 5]
    if kind == "dup4":
        return np.repeat(a, np.where(a % 4 == 3, 2, 1))
    return a


def _train_blocks(root: str) -> list[dict]:
    """Per train identity and ``AUGMENT`` kind: features of its uncut clip and of its simulated
    cuts (``source``: the original frame number of each step, for ``SOURCE_CUTS``)."""
    blocks = []
    for ident in TRAIN_IDS:
        data = load_clip(clip_path(ident, root))
        pairs = PairCache(data)
        exported = ExportedAudio(data.audio) if data.audio is not None else None
        rng = np.random.default_rng(FIT_SEED + zlib_crc(ident))
        for kind in AUGMENT:
            base = augment_frames(len(data), kind)
            # the source frame whose start ends the sound of each frame of ``base`` (the sound
            # of a frame-rate-converted clip flows on; only a removed segment splices it)
            nxt = np.append(base[1:], base[-1] + 1)
            sig = raw_signals(data, base, pairs, follows=base, exported=exported)
            block = {"ident": ident, "source": base, "uncut": (features(sig), sig["diff"])}
            block["minutes"] = len(data) / data.fps / 60
            block["cases"] = []
            avoid = tuple(int(np.searchsorted(base, c)) for c in SOURCE_CUTS.get(ident, ()))
            for length in FIT_LENGTHS:
                for start in case_starts(len(base), length, FIT_CASES, rng, avoid):
                    seq, c = case_window(len(base), start, length)
                    follows = np.append(0, nxt[seq[:-1]])
                    sg = raw_signals(data, base[seq], pairs, follows=follows, exported=exported)
                    block["cases"].append((features(sg), sg["diff"], c))
            blocks.append(block)
    return blocks


def _uncut_false(b: dict, cuts: list[int]) -> list[int]:
    """Detections on a block's uncut sequence that are not its clip's own edits."""
    tol = 1 if len(b["source"]) == 0 or b["source"][-1] < 1.5 * len(b["source"]) else 2
    known = SOURCE_CUTS.get(b["ident"], ())
    return [k for k in cuts if all(abs(int(b["source"][k]) - c) > tol for c in known)]


def _fit_blocks(blocks: list[dict], l2: float) -> np.ndarray:
    xs, ys = [], []
    for b in blocks:
        f, _ = b["uncut"]
        neg = _uncut_false(b, list(range(1, len(f))))
        xs.append(f[neg])
        ys.append(np.zeros(len(neg)))
        for f, _, c in b["cases"]:
            keep = [k for k in range(max(1, c - CASE_HALF), min(len(f), c + CASE_HALF + 1)) if abs(k - c) > 1]
            xs.append(f[[c] + keep])
            ys.append(np.array([1.0] + [0.0] * len(keep)))
    x, y = np.concatenate(xs), np.concatenate(ys)
    sw = np.where(y > 0, (y == 0).sum() / max(1, (y > 0).sum()), 1.0)
    return logistic_fit(x, y, sw, l2)


def _count(blocks: list[dict], betas: list[np.ndarray], th: float) -> tuple[float, float, float]:
    """(false cuts per minute of uncut footage, recall, precision around the simulated cuts) of
    ``blocks`` scored with one weight vector each."""
    false, found, cases, minutes, near = 0, 0, 0, 0.0, 0
    for b, beta in zip(blocks, betas):
        f, d = b["uncut"]
        false += len(_uncut_false(b, pick(_score_from_z(f @ beta[:-1] + beta[-1], d, th))))
        minutes += b["minutes"]
        for f, d, c in b["cases"]:
            hit, fp = judge(pick(_score_from_z(f @ beta[:-1] + beta[-1], d, th)), c)
            found += hit
            near += fp
            cases += 1
    return false / minutes, found / max(1, cases), found / max(1, found + near)


def fit(root: str = DATA_ROOT, l2: float = FIT_L2, blocks: list[dict] | None = None) -> dict:
    """Fit ``WEIGHTS``/``BIAS`` on simulated cuts of the train identities and choose ``THRESHOLD``
    on them by leave-one-identity-out: each train identity is scored by a model fitted on the
    other 14, and the threshold is the lowest one whose pooled out-of-identity false cuts (on the
    uncut clips) stay <= TARGET_FALSE_PER_MIN."""
    blocks = _train_blocks(root) if blocks is None else blocks
    held_out = {ident: _fit_blocks([b for b in blocks if b["ident"] != ident], l2) for ident in TRAIN_IDS}
    oof = [held_out[b["ident"]] for b in blocks]
    grid = np.round(np.arange(-5, 20.01, 0.25), 2)
    best = grid[-1]
    for th in grid:
        if _count(blocks, oof, th)[0] <= TARGET_FALSE_PER_MIN:
            best = float(th)
            break
    fpm, rec, _ = _count(blocks, oof, best)
    beta = _fit_blocks(blocks, l2)
    log.info("fit: threshold %.2f: out-of-identity recall %.3f, %.2f false/min", best, rec, fpm)
    return {
        "weights": dict(zip(FEATURES, map(float, beta[:-1]))),
        "bias": float(beta[-1]),
        "threshold": best,
        "l2": l2,
        "oof_recall": rec,
        "oof_false_per_min": fpm,
    }


def zlib_crc(text: str) -> int:
    import zlib

    return zlib.crc32(text.encode())


def _score_from_z(z: np.ndarray, diff: np.ndarray, threshold: float) -> np.ndarray:
    s = RATIO * np.exp(np.clip(z - threshold, -30, 30))
    s[0] = 0.0
    s[np.nan_to_num(diff) >= HARD_DIFF] = np.inf
    return s


if __name__ == "__main__":
    import json
    import sys

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if sys.argv[1:2] == ["fit"]:
        print(json.dumps(fit(l2=float(sys.argv[2]) if len(sys.argv) > 2 else FIT_L2), indent=1))
