"""Transfer functions (OETF/EOTF) between encoded RGB and scene-linear light."""
from __future__ import annotations

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


def to_linear(x: torch.Tensor, transfer: str) -> torch.Tensor:
    """Encoded values -> linear light."""
    if transfer == "linear":
        return x
    if transfer == "srgb":
        return torch.where(x <= 0.04045, x / 12.92, ((x.clamp(min=0) + 0.055) / 1.055) ** 2.4)
    if transfer == "rec709":
        return torch.where(x < 0.081, x / 4.5, ((x.clamp(min=0) + 0.099) / 1.099) ** (1 / 0.45))
    if transfer == "gamma22":
        return x.clamp(min=0) ** 2.2
    if transfer == "gamma24":
        return x.clamp(min=0) ** 2.4
    raise ValueError(f"unknown transfer {transfer!r}")


def from_linear(x: torch.Tensor, transfer: str) -> torch.Tensor:
    """Linear light -> encoded values."""
    if transfer == "linear":
        return x
    if transfer == "srgb":
        return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x.clamp(min=0) ** (1 / 2.4) - 0.055)
    if transfer == "rec709":
        return torch.where(x < 0.018, x * 4.5, 1.099 * x.clamp(min=0) ** 0.45 - 0.099)
    if transfer == "gamma22":
        return x.clamp(min=0) ** (1 / 2.2)
    if transfer == "gamma24":
        return x.clamp(min=0) ** (1 / 2.4)
    raise ValueError(f"unknown transfer {transfer!r}")


def convert(x: torch.Tensor, source: str, target: str) -> torch.Tensor:
    """Re-encode ``x`` from one transfer function to another."""
    if source == target:
        return x
    return from_linear(to_linear(x, source), target)
