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
    target = rgb_format(channels, bit_depth)
    kwargs = {}
    src = frame.format.name
    if is_yuv(src):
        kwargs = dict(src_colorspace=sws_matrix(color, frame.height),
                      src_color_range=sws_range(color, src), dst_color_range="JPEG")
    if src != target:
        frame = frame.reformat(format=target, interpolation=SWS_FLAGS, **kwargs)
    array = frame.to_ndarray()
    if array.ndim == 2:
        array = array[:, :, None]
    if array.dtype == np.uint8:
        tensor = torch.from_numpy(array).permute(2, 0, 1).float().div_(255.0)
    elif array.dtype == np.uint16:
        tensor = torch.from_numpy(array.astype(np.float32)).permute(2, 0, 1).mul_(1.0 / 65535.0)
    else:
        tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1)
    if rotation % 360:
        tensor = torch.rot90(tensor, k=(rotation % 360) // 90, dims=(1, 2))
    return tensor.contiguous()


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
    if is_float(pix_fmt):
        src_fmt = rgb_format(c, 32)
        array = data.permute(1, 2, 0).contiguous().numpy()
    elif target_bits > 8:
        src_fmt = rgb_format(c, 16)
        array = (data.clamp(0, 1).mul(65535.0).add_(0.5).permute(1, 2, 0)
                 .to(torch.int32).numpy().astype(np.uint16))
    else:
        src_fmt = rgb_format(c, 8)
        array = data.clamp(0, 1).mul(255.0).add_(0.5).permute(1, 2, 0).to(torch.uint8).numpy()
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
