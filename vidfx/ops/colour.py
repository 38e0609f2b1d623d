"""Colour: BT.601 luma, 8-bit grey pictures (for optical flow and cut detection), and the transfer
functions (OETF/EOTF) between encoded RGB and scene-linear light.

Luma everywhere is BT.601, Y = 0.299 R + 0.587 G + 0.114 B (``kornia.color.rgb_to_grayscale``, except
for float input to :func:`grey_u8`, which keeps its own float32 arithmetic: see there).
"""

from __future__ import annotations

from collections.abc import Callable

import kornia
import numpy as np
import torch

TRANSFERS = ("srgb", "rec709", "gamma22", "gamma24", "linear")

# FFmpeg's names for the colour transfer tag of each choice.
TAG_OF_TRANSFER = {
    "srgb": "iec61966-2-1",
    "rec709": "bt709",
    "gamma22": "gamma22",
    "gamma24": "bt709",  # BT.1886 display gamma; FFmpeg has no separate tag
    "linear": "linear",
}


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of RGB, in the input's scale and dtype.

    Shape:
        - rgb: :math:`(*, 3, H, W)`
        - output: :math:`(*, 1, H, W)`
    """
    return kornia.color.rgb_to_grayscale(rgb)


def luma_studio(rgb: torch.Tensor) -> torch.Tensor:
    """BT.601 studio-swing luma, 16..235 for RGB in 0..1 (MATLAB ``rgb2ycbcr``'s Y, used by SR metrics).

    Shape:
        - rgb: :math:`(*, 3, H, W)`
        - output: :math:`(*, 1, H, W)`
    """
    return 16.0 + 219.0 * luma(rgb)


def grey_u8(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """An 8-bit grey picture (BT.601 luma) of an image, e.g. for optical flow.

    Float input is taken as 0..1 and rounded half up (``floor(255 Y + 0.5)``); uint8 input uses
    kornia's integer path, which equals ``cv2.cvtColor(..., COLOR_RGB2GRAY)`` bit for bit. One
    channel is taken as grey already; a fourth channel (alpha) is ignored.

    Shape:
        - image: tensor :math:`(C, H, W)` or array :math:`(H, W, C)` / :math:`(H, W)`, C in {1, 3, 4},
          float or uint8
        - output: numpy uint8 :math:`(H, W)`
    """
    if isinstance(image, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(image))
        x = x[None] if x.dim() == 2 else x.permute(2, 0, 1)
    else:
        x = image.detach().cpu()
    if x.dtype == torch.uint8:
        y = x[0] if x.shape[0] < 3 else luma(x[:3])[0]
        return np.ascontiguousarray(y.numpy())
    x = x.float().clamp(0, 1)
    # Not luma(): kornia's fused multiply-add rounds some 255 Y = n + 0.5 ties the other way, which moves the
    # flow the shipped VSR weights were trained on (up to 1.5e-3 in their output on Vid4).
    y = x[0] if x.shape[0] < 3 else 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]
    return np.ascontiguousarray((y * 255.0 + 0.5).clamp(0, 255).to(torch.uint8).numpy())


def transfer_from_tag(tag: str | None) -> str:
    """Our transfer name for an FFmpeg ``color_trc`` tag (untagged video is taken as Rec.709)."""
    return {
        "iec61966-2-1": "srgb",
        "iec61966_2_1": "srgb",
        "bt709": "rec709",
        "smpte170m": "rec709",
        "bt2020-10": "rec709",
        "bt2020-12": "rec709",
        "bt2020_10": "rec709",
        "bt2020_12": "rec709",
        "gamma22": "gamma22",
        "gamma28": "gamma22",
        "linear": "linear",
    }.get(tag or "", "rec709")


def _per_element(fn: Curve, x: torch.Tensor) -> torch.Tensor:
    """Apply kornia's sRGB curve, which only accepts (*, 3, H, W), to a tensor of any shape
    (the curve is per element)."""
    if x.dim() >= 3 and x.shape[-3] == 3:
        return fn(x)
    flat = x.reshape(1, 1, 1, -1).expand(1, 3, 1, -1)
    return fn(flat)[0, 0, 0].reshape(x.shape)


Curve = Callable[[torch.Tensor], torch.Tensor]
# transfer -> (encoded -> linear, linear -> encoded); kornia has sRGB's curve only.
_CURVES: dict[str, tuple[Curve, Curve]] = {
    "srgb": (
        lambda x: _per_element(kornia.color.rgb_to_linear_rgb, x),
        lambda x: _per_element(kornia.color.linear_rgb_to_rgb, x),
    ),
    "rec709": (
        lambda x: torch.where(x < 0.081, x / 4.5, ((x.clamp(min=0) + 0.099) / 1.099) ** (1 / 0.45)),
        lambda x: torch.where(x < 0.018, x * 4.5, 1.099 * x.clamp(min=0) ** 0.45 - 0.099),
    ),
    "gamma22": (lambda x: x.clamp(min=0) ** 2.2, lambda x: x.clamp(min=0) ** (1 / 2.2)),
    "gamma24": (lambda x: x.clamp(min=0) ** 2.4, lambda x: x.clamp(min=0) ** (1 / 2.4)),
    "linear": (lambda x: x, lambda x: x),
}


def _curves(transfer: str) -> tuple[Curve, Curve]:
    if transfer not in _CURVES:
        raise ValueError(f"unknown transfer {transfer!r}; valid: {', '.join(TRANSFERS)}")
    return _CURVES[transfer]


def to_linear(x: torch.Tensor, transfer: str) -> torch.Tensor:
    """Encoded values -> linear light, elementwise.

    Shape:
        - x: any, e.g. :math:`(C, H, W)`
        - output: same as ``x``
    """
    return _curves(transfer)[0](x)


def from_linear(x: torch.Tensor, transfer: str) -> torch.Tensor:
    """Linear light -> encoded values, elementwise.

    Shape:
        - x: any, e.g. :math:`(C, H, W)`
        - output: same as ``x``
    """
    return _curves(transfer)[1](x)


def convert(x: torch.Tensor, source: str, target: str) -> torch.Tensor:
    """Re-encode ``x`` from one transfer function to another.

    Shape:
        - x: any, e.g. :math:`(C, H, W)`
        - output: same as ``x``
    """
    if source == target:
        return x
    return from_linear(to_linear(x, source), target)
