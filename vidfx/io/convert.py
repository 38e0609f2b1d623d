"""Pixel conversion between PyAV frames and vidfx tensors, using the stream's own
YUV matrix and range (never a guessed one when the file says which)."""

from __future__ import annotations

from typing import Any

import av
import numpy as np
import torch
from av.video.reformatter import Interpolation

from vidfx.core.frame import ColourTags

from .pixfmt import is_float, is_yuv

# Chroma is interpolated (not nearest) and rounding is exact. (FULL_CHR_H_INT would add
# little for twice the time.)
SWS_FLAGS = Interpolation.BILINEAR | Interpolation.ACCURATE_RND

# FFmpeg matrix name -> swscale colorspace name (PyAV Colorspace members).
_SWS_MATRIX = {
    "bt709": "ITU709",
    "fcc": "FCC",
    "bt470bg": "ITU601",
    "smpte170m": "ITU601",
    "smpte240m": "SMPTE240M",
    "bt2020nc": "BT2020",
    "bt2020c": "BT2020",
}


def default_matrix(height: int) -> str:
    """The matrix players assume when a file does not say: BT.709 for HD, BT.601 for SD."""
    return "bt709" if height >= 720 else "smpte170m"


def sws_matrix(colour: ColourTags, height: int) -> str:
    """swscale's colorspace for a stream's matrix tag (or the usual default)."""
    return _SWS_MATRIX.get(colour.matrix or default_matrix(height), "ITU601")


def sws_range(colour: ColourTags, pix_fmt: str | None = None) -> str:
    """swscale's range for a stream: JPEG (full) for ``pc`` or yuvj formats, else MPEG."""
    if colour.range == "pc" or (pix_fmt or "").startswith("yuvj"):
        return "JPEG"
    return "MPEG"


def rgb_format(channels: int, bit_depth: int) -> str:
    """The planar RGB(A)/grey format that frames with that many channels and bits convert
    through (8-bit, 16-bit, or float for ``bit_depth >= 32``)."""
    kind = 32 if bit_depth >= 32 else 16 if bit_depth > 8 else 8
    return _PLANAR[(channels, kind)]


# Planar formats read and written plane by plane: (C, H, W) tensors map onto them without
# any transpose (transposing 1080p float images costs more than the colour conversion).
_PLANAR = {
    (1, 8): "gray",
    (1, 16): "gray16le",
    (1, 32): "grayf32le",
    (3, 8): "gbrp",
    (3, 16): "gbrp16le",
    (3, 32): "gbrpf32le",
    (4, 8): "gbrap",
    (4, 16): "gbrap16le",
    (4, 32): "gbrapf32le",
}
_PLANE_TYPES = {  # format -> (plane order for R, G, B[, A] or grey, numpy dtype, full-scale value)
    "gray": ((0,), "u1", 255.0),
    "gray16le": ((0,), "<u2", 65535.0),
    "grayf32le": ((0,), "<f4", None),
    "grayf16le": ((0,), "<f2", None),
    "gbrp": ((2, 0, 1), "u1", 255.0),
    "gbrp16le": ((2, 0, 1), "<u2", 65535.0),
    "gbrpf32le": ((2, 0, 1), "<f4", None),
    "gbrpf16le": ((2, 0, 1), "<f2", None),
    "gbrap": ((2, 0, 1, 3), "u1", 255.0),
    "gbrap16le": ((2, 0, 1, 3), "<u2", 65535.0),
    "gbrapf32le": ((2, 0, 1, 3), "<f4", None),
    "gbrapf16le": ((2, 0, 1, 3), "<f2", None),
    # 10/12-bit planar RGB and grey (FFV1) are read and written directly too: no swscale
    # dithering, so lossless stays lossless
    "gray10le": ((0,), "<u2", 1023.0),
    "gray12le": ((0,), "<u2", 4095.0),
    "gbrp10le": ((2, 0, 1), "<u2", 1023.0),
    "gbrp12le": ((2, 0, 1), "<u2", 4095.0),
    "gbrap10le": ((2, 0, 1, 3), "<u2", 1023.0),
    "gbrap12le": ((2, 0, 1, 3), "<u2", 4095.0),
}


def _plane(frame: av.VideoFrame, index: int, dtype: str) -> np.ndarray:
    """A writable (H, W) numpy view of one plane (without the row padding)."""
    plane = frame.planes[index]
    item = np.dtype(dtype).itemsize
    rows = np.frombuffer(memoryview(plane), dtype=dtype).reshape(frame.height, plane.line_size // item)
    return rows[:, : frame.width]


def av_to_tensor(
    frame: av.VideoFrame, channels: int, bit_depth: int, colour: ColourTags, rotation: int = 0
) -> torch.Tensor:
    """A decoded frame as a (C, H, W) float32 tensor in 0..1 (float sources: as stored), upright.

    >8-bit sources go through 16-bit RGB so their precision survives into float; half and
    float (EXR) planes are read directly, so values above 1 survive too.
    ``rotation`` is counter-clockwise degrees (the display matrix), applied here.
    """
    src = frame.format.name
    if src not in _PLANE_TYPES or len(_PLANE_TYPES[src][0]) != channels:
        target = rgb_format(channels, 32 if is_float(src) else bit_depth)
        kwargs: dict[str, Any] = {}
        if is_yuv(src):
            kwargs = dict(
                src_colorspace=sws_matrix(colour, frame.height),
                src_color_range=sws_range(colour, src),
                dst_color_range="JPEG",
            )
        frame = frame.reformat(format=target, interpolation=SWS_FLAGS, **kwargs)
    order, dtype, full = _PLANE_TYPES[frame.format.name]
    out = np.empty((len(order), frame.height, frame.width), np.float32)
    for k, index in enumerate(order):
        out[k] = _plane(frame, index, dtype)
    if full is not None:
        out *= np.float32(1.0 / full)
    tensor = torch.from_numpy(out)
    if rotation % 360:
        tensor = torch.rot90(tensor, k=(rotation % 360) // 90, dims=(1, 2)).contiguous()
    return tensor


def tensor_to_av(data: torch.Tensor, pix_fmt: str, colour: ColourTags) -> av.VideoFrame:
    """A (C, H, W) float tensor as a PyAV frame in ``pix_fmt``.

    RGB->YUV uses ``colour``'s matrix and range (defaults as in ``sws_matrix``); float
    targets (EXR) keep values outside 0..1, integer targets clip.
    """
    data = data.detach().to("cpu", torch.float32)
    channels, height, width = data.shape
    target_fmt = av.VideoFormat(pix_fmt)
    target_bits = max(c.bits for c in target_fmt.components)
    target_alpha = any(c.is_alpha for c in target_fmt.components)
    target_grey = pix_fmt.startswith(("gray", "ya"))
    if target_grey and not pix_fmt.startswith("ya") and channels > 1:
        data = data[:3].mean(0, keepdim=True) if channels >= 3 else data[:1]
    elif not target_grey and channels == 1:
        data = data.expand(3, -1, -1)
    if target_alpha and data.shape[0] == 3:
        data = torch.cat([data, torch.ones_like(data[:1])])
    elif not target_alpha and data.shape[0] == 4:
        data = data[:3]
    chw = data.numpy()
    if pix_fmt in _PLANE_TYPES and len(_PLANE_TYPES[pix_fmt][0]) == chw.shape[0]:
        src_fmt = pix_fmt  # written directly
    else:
        kind = 32 if is_float(pix_fmt) else 16 if target_bits > 8 else 8
        src_fmt = rgb_format(chw.shape[0], kind)
    order, dtype, full = _PLANE_TYPES[src_fmt]
    if full is not None:
        scaled = np.multiply(chw, np.float32(full))
        scaled += 0.5
        np.clip(scaled, 0.0, full, out=scaled)
        chw = scaled.astype(dtype)
    frame = av.VideoFrame(width, height, src_fmt)
    for k, index in enumerate(order):
        _plane(frame, index, dtype)[...] = chw[k]
    if src_fmt == pix_fmt:
        return frame
    kwargs: dict[str, Any] = {}
    if is_yuv(pix_fmt):
        kwargs = dict(
            dst_colorspace=sws_matrix(colour, height),
            dst_color_range=sws_range(colour, pix_fmt),
            src_color_range="JPEG",
        )
    return frame.reformat(format=pix_fmt, interpolation=SWS_FLAGS, **kwargs)
