"""Saving and loading VSR weights files (``torch.load(..., weights_only=True)``).

A weights file is a dict: ``{"format": "vidfx-vsr-1", "config": VSRConfig.to_dict(),
"state_dict": {...}, "meta": {...}}``. Shipped files live in ``vidfx/vsr/weights/``.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..core.errors import ModelError
from .arch import VideoSR
from .config import VSRConfig

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
FORMAT = "vidfx-vsr-1"


def shipped_weights(name: str) -> Path:
    """Path of a shipped weights file, e.g. ``tiny_x4`` -> ``vidfx/vsr/weights/tiny_x4.pt``."""
    return WEIGHTS_DIR / f"{name}.pt"


def save_weights(model: VideoSR, path: str | Path, meta: dict | None = None, half: bool = False) -> None:
    """Write ``model``'s config and weights (fp16 when ``half``) atomically to ``path``."""
    path = Path(path)
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
             for k, v in model.state_dict().items()}
    blob = {"format": FORMAT, "config": model.cfg.to_dict(), "state_dict": state, "meta": meta or {}}
    tmp = path.with_suffix(path.suffix + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(blob, tmp)
    os.replace(tmp, path)


def load_weights(path: str | Path, device: torch.device | str = "cpu") -> tuple[VideoSR, dict]:
    """Build the model stored in ``path`` and load its weights; returns (model in eval
    mode on ``device``, meta). Raises ModelError naming the file when it is missing,
    unreadable or does not match."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"vsr: weights file not found: {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not a torch file, pickled code...
        raise ModelError(f"vsr: cannot read weights file {path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ModelError(f"vsr: {path} is not a vidfx VSR weights file")
    try:
        cfg = VSRConfig.from_dict(blob["config"])
        model = VideoSR(cfg)
        model.load_state_dict({k: v.float() for k, v in blob["state_dict"].items()})
    except Exception as exc:
        raise ModelError(f"vsr: weights file {path} does not match the model: {exc}") from None
    return model.to(device).eval(), dict(blob.get("meta", {}))
