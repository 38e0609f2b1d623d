"""Loading shipped weights and running the CamVid model on pictures of any size."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from vidfx.core.errors import ModelError

from .arch import MBConvUNet, SegNetConfig

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "camvid_mbconv_unet.pt"
DEFAULT_SCALE = 0.5  # processing scale relative to the input (the shipped weights store theirs)


def save_weights(path: str | Path, model: MBConvUNet, extra: dict | None = None) -> None:
    """Save a model as {config, state_dict, meta} (plain tensors/dicts, loadable with weights_only)."""
    # Floating-point tensors are stored as float16 (half the size; load_model casts back).
    state = {k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu())
             for k, v in model.state_dict().items()}
    torch.save({"config": model.config.to_dict(), "state_dict": state, "meta": extra or {}}, str(path))


def load_model(path: str | Path | None = None, device: torch.device | str = "cpu") -> MBConvUNet:
    """The trained model from ``path`` (default: the shipped weights), in eval mode.

    Raises ModelError naming the file if it is missing or not a valid weights file.
    """
    path = Path(path) if path else DEFAULT_WEIGHTS
    if not path.is_file():
        raise ModelError(f"segment: weights file not found: {path}")
    try:
        blob = torch.load(str(path), map_location="cpu", weights_only=True)
        model = MBConvUNet(SegNetConfig(**blob["config"]))
        model.load_state_dict({k: (v.float() if v.is_floating_point() else v) for k, v in blob["state_dict"].items()})
    except Exception as exc:  # corrupt pickle, wrong keys, wrong shapes
        raise ModelError(f"segment: cannot load weights {path}: {type(exc).__name__}: {exc}") from None
    model.meta = dict(blob.get("meta", {}))
    return model.to(device).eval()


_CACHE: dict[tuple, MBConvUNet] = {}


def load_model_shared(path: str | Path | None = None, device: torch.device | str = "cpu") -> MBConvUNet:
    """Like ``load_model`` but returns one shared (read-only, eval-mode) model per file,
    device and modification time, so many nodes in a process load the weights once."""
    path = Path(path) if path else DEFAULT_WEIGHTS
    key = (str(path.resolve()), path.stat().st_mtime_ns if path.is_file() else None, str(device))
    if key not in _CACHE:
        _CACHE[key] = load_model(path, device)
    return _CACHE[key]


def weights_scale(model: MBConvUNet) -> float:
    """The processing scale stored with the weights (falls back to DEFAULT_SCALE)."""
    return float(getattr(model, "meta", {}).get("scale", DEFAULT_SCALE))


def predict_lowres(model: MBConvUNet, images: torch.Tensor, scale: float = DEFAULT_SCALE) -> torch.Tensor:
    """Class logits at the processing size (B, K, round(H*scale), round(W*scale)) for RGB
    images (B, 3, H, W) in 0..1, any H and W.

    The picture is resized by ``scale`` (at least one network stride per side), padded
    (edge replicate) to a multiple of the stride, run, and the padding cropped off.
    """
    _, _, h, w = images.shape
    stride = model.config.stride
    sh, sw = max(stride, round(h * scale)), max(stride, round(w * scale))
    x = images
    if (sh, sw) != (h, w):
        x = F.interpolate(x, size=(sh, sw), mode="bilinear", align_corners=False, antialias=sh < h)
    ph, pw = (-sh) % stride, (-sw) % stride
    if ph or pw:
        mode = "replicate" if (ph < sh and pw < sw) else "constant"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return model(x)[:, :, :sh, :sw]


def predict_logits(model: MBConvUNet, images: torch.Tensor, scale: float = DEFAULT_SCALE) -> torch.Tensor:
    """Class logits (B, K, H, W) at the input's size (``predict_lowres`` resized back)."""
    h, w = images.shape[-2:]
    logits = predict_lowres(model, images, scale)
    if logits.shape[-2:] != (h, w):
        logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
    return logits
