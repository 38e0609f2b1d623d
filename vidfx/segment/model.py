"""Loading shipped weights and running the CamVid model on pictures of any size."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from vidfx.ops import weights as ops_weights

from .arch import MBConvUNet, SegNetConfig

FAMILY = "segment"  # the family tag in segment weights files
WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "camvid_mbconv_unet.pt"
DEFAULT_SCALE = 0.5  # processing scale relative to the input (the shipped weights store theirs)


def save_weights(path: str | Path, model: MBConvUNet, extra: dict | None = None) -> None:
    """Save a segment weights file (``vidfx.ops.weights`` format) with meta ``extra``.
    Floating-point tensors are stored as float16 (half the size; loading casts back)."""
    ops_weights.save_weights(path, FAMILY, model, model.config.to_dict(), extra, half=True)


def build_segnet(weights: ops_weights.Weights) -> MBConvUNet:
    """The (untrained) MBConvUNet of a segment weights file, with the file's meta as ``.meta``."""
    model = MBConvUNet(SegNetConfig(**weights.config))
    model.meta = dict(weights.meta)
    return model


def load_model(path: str | Path | None = None, device: torch.device | str = "cpu") -> MBConvUNet:
    """A model of its own from ``path`` (default: the shipped weights), in eval mode, to train
    or change. Raises ModelError naming the file if it is missing or not a valid weights file."""
    model, _ = ops_weights.build_model(path or DEFAULT_WEIGHTS, FAMILY, build_segnet, device)
    return model


def load_model_shared(path: str | Path | None = None, device: torch.device | str = "cpu") -> MBConvUNet:
    """The model from ``path`` (default: the shipped weights) shared through the process-wide
    cache of ``vidfx.ops.weights``: for inference only, never change it."""
    model, _ = ops_weights.load_model(path or DEFAULT_WEIGHTS, FAMILY, build_segnet, device)
    return model


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
