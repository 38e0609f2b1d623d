"""Facts about FFmpeg pixel formats, by name: bit depth, alpha, grey, Y'CbCr, float, RGB.

Shared by the probe, the image-sequence reader and the pixel converters. It imports no
other module of vidfx.io, so any of them can use it without an import cycle.
"""

from __future__ import annotations

import re

import av


def bit_depth_of(pix_fmt: str | None) -> int:
    """Bits per component of a pixel format: 8, 10, 12, 16 (32 for float formats)."""
    if not pix_fmt:
        return 8
    try:
        fmt = av.VideoFormat(pix_fmt)
    except (ValueError, av.FFmpegError):
        return 8
    depths = [c.bits for c in fmt.components if not getattr(c, "is_alpha", False)] or [8]
    return max(depths)


def has_alpha(pix_fmt: str | None) -> bool:
    """Whether a pixel format carries an alpha plane."""
    if not pix_fmt:
        return False
    try:
        return any(c.is_alpha for c in av.VideoFormat(pix_fmt).components)
    except (ValueError, av.FFmpegError, AttributeError):
        return pix_fmt.startswith(("yuva", "rgba", "bgra", "argb", "abgr", "gbrap", "ya"))


def is_grey(pix_fmt: str | None) -> bool:
    """Whether a pixel format is single-channel (grey/mask)."""
    return bool(pix_fmt and pix_fmt.startswith("gray"))


def is_yuv(pix_fmt: str) -> bool:
    """Whether a pixel format is Y'CbCr (needs a matrix and a range)."""
    return pix_fmt.startswith(("yuv", "nv", "p0", "p2", "y2", "uyvy", "yuyv", "ayuv", "xv", "v210"))


def is_float(pix_fmt: str) -> bool:
    """Whether a pixel format stores floating-point samples (EXR's gbrpf32le...)."""
    return bool(re.search(r"f(16|32)(le|be)$", pix_fmt))


def is_rgb(pix_fmt: str) -> bool:
    """Whether a pixel format stores RGB, grey or palette samples (no Y'CbCr matrix)."""
    return pix_fmt.startswith(("rgb", "bgr", "gbr", "argb", "abgr", "gray", "pal8"))
