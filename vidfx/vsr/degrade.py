"""Degradations that turn an HR clip into the LR input the network learns to invert.

``bi``: MATLAB bicubic downscaling (the benchmark protocol). ``bd``: Gaussian blur
(sigma 1.6) then keep every s-th pixel. ``realistic``: random blur, resizes, noise, JPEG
and H.264 compression, with one set of random parameters per clip (so the degradation is
temporally consistent, like a real video). Clips are float32 (T, H, W, 3) arrays in 0..1.
"""

from __future__ import annotations

import io

import cv2
import numpy as np

from ..ops.resample import imresize_np


def degrade_bi(clip: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic (MATLAB imresize, antialiased) downscaling by ``scale``."""
    return np.stack([imresize_np(f, 1.0 / scale) for f in clip])


def degrade_bd(clip: np.ndarray, scale: int, sigma: float = 1.6) -> np.ndarray:
    """Gaussian blur (13x13, ``sigma``), then every ``scale``-th pixel."""
    # OpenCV on the numpy clip; BORDER_REFLECT repeats the edge pixel, which kornia's 'reflect' padding does not
    out = []
    for f in clip:
        b = cv2.GaussianBlur(f, (13, 13), sigma, borderType=cv2.BORDER_REFLECT)
        out.append(b[scale // 2 - 1 :: scale, scale // 2 - 1 :: scale][: f.shape[0] // scale, : f.shape[1] // scale])
    return np.stack(out)


def _h264_roundtrip(clip_u8: np.ndarray, crf: int) -> np.ndarray:
    """Encode a (T, H, W, 3) uint8 clip with libx264 at ``crf`` in memory and decode it."""
    import av

    t, h, w, _ = clip_u8.shape
    ph, pw = h % 2, w % 2
    if ph or pw:
        clip_u8 = np.pad(clip_u8, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height = clip_u8.shape[2], clip_u8.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "ultrafast"}
        for f in clip_u8:
            for pkt in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(pkt)
        for pkt in stream.encode():
            out.mux(pkt)
    buf.seek(0)
    with av.open(buf, "r") as inp:
        frames = [fr.to_ndarray(format="rgb24") for fr in inp.decode(video=0)]
    return np.stack(frames)[:, :h, :w]


def degrade_realistic(clip: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """Blur -> resize (random method, via a random intermediate size) -> noise -> JPEG or
    H.264 -> (sometimes) a second mild blur. Parameters are drawn once per clip."""
    t, h, w, _ = clip.shape
    oh, ow = h // scale, w // scale
    sigma_x, sigma_y = rng.uniform(0.2, 2.5, size=2)
    angle = rng.uniform(0, 180)
    k = 2 * int(3 * max(sigma_x, sigma_y)) + 1
    # rotated anisotropic Gaussian kernel (kornia's Gaussian kernels are axis-aligned only)
    ys, xs = np.mgrid[-(k // 2) : k // 2 + 1, -(k // 2) : k // 2 + 1].astype(np.float32)
    c, s = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
    xr, yr = c * xs + s * ys, -s * xs + c * ys
    kern = np.exp(-0.5 * ((xr / sigma_x) ** 2 + (yr / sigma_y) ** 2))
    kern /= kern.sum()
    mid = rng.uniform(0.5, 1.3)  # intermediate size relative to the final one x scale
    mh, mw = max(oh, int(h * mid / scale * 2)), max(ow, int(w * mid / scale * 2))
    methods = [cv2.INTER_AREA, cv2.INTER_LINEAR, cv2.INTER_CUBIC]
    m1, m2 = rng.choice(methods), rng.choice(methods)
    noise_sigma = rng.uniform(0, 12) / 255 if rng.random() < 0.7 else 0.0
    gray_noise = rng.random() < 0.3
    codec = rng.choice(["jpeg", "h264", "none"], p=[0.4, 0.4, 0.2])
    jpeg_q = int(rng.integers(35, 95))
    crf = int(rng.integers(18, 34))
    out = []
    for f in clip:
        f = cv2.filter2D(f, -1, kern, borderType=cv2.BORDER_REFLECT)
        f = cv2.resize(f, (mw, mh), interpolation=int(m1))
        f = cv2.resize(f, (ow, oh), interpolation=int(m2))
        if noise_sigma > 0:
            shape = f.shape[:2] + ((1,) if gray_noise else (3,))
            f = f + rng.normal(0, noise_sigma, size=shape).astype(np.float32)
        out.append(np.clip(f, 0, 1))
    lr = np.stack(out)
    if codec == "jpeg":
        enc = []
        for f in lr:
            ok, data = cv2.imencode(
                ".jpg", (f[..., ::-1] * 255 + 0.5).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, jpeg_q]
            )
            enc.append(cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1])
        lr = np.stack(enc).astype(np.float32) / 255
    elif codec == "h264":
        lr = _h264_roundtrip((lr * 255 + 0.5).astype(np.uint8), crf).astype(np.float32) / 255
    return np.ascontiguousarray(lr, dtype=np.float32)


def degrade(clip: np.ndarray, scale: int, mode: str, rng: np.random.Generator) -> np.ndarray:
    """Apply degradation ``mode`` (``bi``, ``bd`` or ``realistic``) to an HR clip."""
    if mode == "bi":
        return degrade_bi(clip, scale)
    if mode == "bd":
        return degrade_bd(clip, scale)
    if mode == "realistic":
        return degrade_realistic(clip, scale, rng)
    raise ValueError(f"unknown degradation {mode!r} (bi, bd, realistic)")
