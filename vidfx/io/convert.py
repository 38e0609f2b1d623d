"""Pixel conversion between PyAV frames and vidfx tensors, using the stream's own
YUV matrix and range (never a guessed one when the file says which)."""
from __future__ import annotations

import re

import av
import numpy as np
import torch
from av.video.reformatter import Interpolation

from vidfx.core.frame import ColorTags

# Chroma is interpolated (not nearest) and rounding is exact: worth it, conversion is rare
# on the pass-through path and its cost is small next to decode/encode.
SWS_FLAGS = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT

# FFmpeg matrix name -> swscale colorspace name (PyAV Colorspace members).
_SWS_MATRIX = {
    "bt709": "ITU709", "fcc": "FCC", "bt470bg": "ITU601", "smpte170m": "ITU601",
    "smpte240m": "SMPTE240M", "bt2020nc": "BT2020", "bt2020c": "BT2020",
}


def default_matrix(height: int) -> str:
    """The matrix players assume when a file does not say: BT.709 for HD, BT.601 for SD."""
    return "bt709" if height >= 720 else "smpte170m"


def sws_matrix(color: ColorTags, height: int) -> str:
    """swscale's colorspace for a stream's matrix tag (or the usual default)."""
    return _SWS_MATRIX.get(color.matrix or default_matrix(height), "ITU601")


def sws_range(color: ColorTags, pix_fmt: str | None = None) -> str:
    """swscale's range for a stream: JPEG (full) for ``pc`` or yuvj formats, else MPEG."""
    if color.range == "pc" or (pix_fmt or "").startswith("yuvj"):
        return "JPEG"
    return "MPEG"


def is_yuv(pix_fmt: str) -> bool:
    """Whether a pixel format is Y'CbCr (needs a matrix and a range)."""
    return pix_fmt.startswith(("yuv", "nv", "p0", "p2", "y2", "uyvy", "yuyv", "ayuv", "xv", "v210"))


def is_float(pix_fmt: str) -> bool:
    """Whether a pixel format stores floating-point samples (EXR's gbrpf32le...)."""
    return bool(re.search(r"f(16|32)(le|be)$", pix_fmt))


def rgb_format(channels: int, bit_depth: int) -> str:
    """The packed RGB(A)/grey format a frame with that many channels and bits converts to."""
    if bit_depth >= 32:
        return {1: "grayf32le", 3: "gbrpf32le", 4: "gbrapf32le"}[channels]
    if bit_depth > 8:
        return {1: "gray16le", 3: "rgb48le", 4: "rgba64le"}[channels]
    return {1: "gray", 3: "rgb24", 4: "rgba"}[channels]


def av_to_tensor(frame: av.VideoFrame, channels: int, bit_depth: int, color: ColorTags,
                 rotation: int = 0) -> torch.Tensor:
    """A decoded frame as a (C, H, W) float32 tensor in 0..1, upright.

    >8-bit sources go through 16-bit RGB so their precision survives into float.
    ``rotation`` is counter-clockwise degrees (the display matrix), applied here.
    """
    src = frame.format.name
    if src in HALF_PLANAR:
        return _half_to_tensor(frame, rotation)
    target = rgb_format(channels, 32 if is_float(src) else bit_depth)
    kwargs = {}
    if is_yuv(src):
        kwargs = dict(src_colorspace=sws_matrix(color, frame.height),
                      src_color_range=sws_range(color, src), dst_color_range="JPEG")
    if src != target:
        frame = frame.reformat(format=target, interpolation=SWS_FLAGS, **kwargs)
    array = frame.to_ndarray()
    if array.ndim == 2:
        array = array[:, :, None]
    # numpy, not torch, for these element-wise steps: torch's thread pool is slow when the
    # machine is busy, and these are memory-bound anyway
    planar = np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32)
    if array.dtype == np.uint8:
        planar *= 1.0 / 255.0
    elif array.dtype == np.uint16:
        planar *= 1.0 / 65535.0
    tensor = torch.from_numpy(planar)
    if rotation % 360:
        tensor = torch.rot90(tensor, k=(rotation % 360) // 90, dims=(1, 2)).contiguous()
    return tensor


# Half-float planar formats (EXR "half"): planes in G, B, R, A order, read directly because
# swscale clips float values to 0..1 and PyAV has no ndarray view of them.
HALF_PLANAR = {"gbrpf16le": (2, 0, 1), "gbrapf16le": (2, 0, 1, 3), "grayf16le": (0,)}


def _half_to_tensor(frame: av.VideoFrame, rotation: int = 0) -> torch.Tensor:
    order = HALF_PLANAR[frame.format.name]
    planes = []
    for index in order:
        plane = frame.planes[index]
        rows = np.frombuffer(plane, dtype="<f2").reshape(frame.height, plane.line_size // 2)
        planes.append(rows[:, : frame.width].astype(np.float32))
    tensor = torch.from_numpy(np.stack(planes))
    if rotation % 360:
        tensor = torch.rot90(tensor, k=(rotation % 360) // 90, dims=(1, 2)).contiguous()
    return tensor


def tensor_to_av(data: torch.Tensor, pix_fmt: str, color: ColorTags) -> av.VideoFrame:
    """A (C, H, W) float tensor as a PyAV frame in ``pix_fmt``.

    RGB->YUV uses ``color``'s matrix and range (defaults as in ``sws_matrix``); float
    targets (EXR) keep values outside 0..1, integer targets clip.
    """
    data = data.detach().to("cpu", torch.float32)
    channels, height, _ = data.shape
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
    c = data.shape[0]
    hwc = data.numpy().transpose(1, 2, 0).copy()  # a copy: the caller's tensor stays as it is
    if is_float(pix_fmt):
        src_fmt = rgb_format(c, 32)
        array = hwc
    else:
        src_fmt = rgb_format(c, 16 if target_bits > 8 else 8)
        scale = 65535.0 if target_bits > 8 else 255.0
        np.clip(hwc, 0.0, 1.0, out=hwc)
        hwc *= scale
        hwc += 0.5
        array = hwc.astype(np.uint16 if target_bits > 8 else np.uint8)
    if array.shape[2] == 1:
        array = array[:, :, 0]
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format=src_fmt)
    if src_fmt == pix_fmt:
        return frame
    kwargs = {}
    if is_yuv(pix_fmt):
        kwargs = dict(dst_colorspace=sws_matrix(color, height), dst_color_range=sws_range(color, pix_fmt),
                      src_color_range="JPEG")
    return frame.reformat(format=pix_fmt, interpolation=SWS_FLAGS, **kwargs)
