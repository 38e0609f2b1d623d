"""Patch features and a Fréchet distance in a feature space the project owns (for ``vidfx eval fill``).

FID-style scores usually use Inception or VGG features; no such weights exist offline here, so
the features come from the project's own CamVid segmentation network
(:class:`vidfx.segment.arch.MBConvUNet`, the shipped ``camvid_mbconv_unet.pt`` weights loaded
with :func:`vidfx.segment.model.load_model_shared`).

Layer: the outputs of the encoder levels 1, 2 and 3 (``model.encoders[1..3]``, at 1/8, 1/16 and
1/32 of the input; 32 channels each with the shipped config), each global-average-pooled and
concatenated: D = 3 x 32 = 96. Why these: level 0 (1/4, right after the stem) is still mostly
colour and local edges, which PSNR and SSIM already measure; the deeper levels were trained to
tell road, building, tree, sky and so on apart, so they describe texture and structure over a
wider context (a 64x64 patch is 8x8, 4x4 and 2x2 cells there). The decoder is left out because
it is shaped for per-pixel labels (it re-injects the shallow skips). The features are taken by
calling the network's own submodules (stem, down, encoders) in the order of its ``forward``;
``vidfx/segment/arch.py`` is unchanged.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F

from ..segment.arch import MBConvUNet
from ..segment.model import load_model_shared

FEATURE_LEVELS = (1, 2, 3)  # encoder levels whose pooled outputs are concatenated
BATCH = 128  # patches per forward pass


def encoder_maps(model: MBConvUNet, x: torch.Tensor, levels: tuple[int, ...] = FEATURE_LEVELS) -> list[torch.Tensor]:
    """The encoder outputs of ``model`` at ``levels`` (differentiable with respect to ``x``).

    Shape:
        - x: :math:`(N, 3, H, W)` float RGB 0..1, H and W multiples of ``model.config.stride``
        - output: one :math:`(N, C, H / 2^{l+2}, W / 2^{l+2})` map per level ``l``
    """
    mean, std = cast(torch.Tensor, model.mean), cast(torch.Tensor, model.std)
    h = (x - mean) / std
    h = model.stem(h)
    maps = []
    for level, encoder in enumerate(model.encoders):
        if level > max(levels):
            break
        if level > 0:
            h = model.down[level - 1](h)
        h = encoder(h)
        if level in levels:
            maps.append(h)
    return maps


def encoder_features(model: MBConvUNet, x: torch.Tensor, levels: tuple[int, ...] = FEATURE_LEVELS) -> torch.Tensor:
    """Global-average-pooled :func:`encoder_maps`, concatenated.

    Shape:
        - x: :math:`(N, 3, H, W)` float RGB 0..1, H and W multiples of ``model.config.stride``
        - output: :math:`(N, len(levels) * width)`
    """
    return torch.cat([m.mean((2, 3)) for m in encoder_maps(model, x, levels)], 1)


def feature_loss(
    model: MBConvUNet, pred: torch.Tensor, target: torch.Tensor, levels: tuple[int, ...] = (0, 1, 2)
) -> torch.Tensor:
    """Feature-space reconstruction loss (our stand-in for a VGG/LPIPS perceptual loss): mean L1
    between :func:`encoder_maps` of ``pred`` and ``target``, summed over ``levels``. A blurred
    prediction loses the textures these features respond to, so unlike a pixel loss this one
    does not reward averaging. ``model`` should be frozen (``requires_grad_(False)``).

    Shape:
        - pred, target: :math:`(N, 3, H, W)` RGB 0..1, H and W multiples of the network stride
        - output: scalar
    """
    fp = encoder_maps(model, pred, levels)
    with torch.no_grad():
        ft = encoder_maps(model, target, levels)
    return torch.stack([(a - b).abs().mean() for a, b in zip(fp, ft, strict=True)]).mean()


def patch_features(patches: torch.Tensor, model: MBConvUNet | None = None) -> np.ndarray:
    """Features of image patches (see the module docstring for the network and layers).

    Patches whose sides are not multiples of the network stride (32) are resized (bilinear) up to
    the next multiple; 64x64 patches go in as they are. ``model`` defaults to the shipped CamVid
    network on the CPU.

    Shape:
        - patches: :math:`(N, 3, P, P)` float, RGB 0..1
        - output: float64 array :math:`(N, D)`, D = 96 with the shipped weights
    """
    net = model if model is not None else load_model_shared(device="cpu")
    stride = net.config.stride
    device = next(net.parameters()).device
    out = []
    # The network is small and the batches are a few dozen 64x64 patches: one CPU thread is as
    # fast, and several threads on a busy machine were found to be ~50x slower (oversubscription).
    threads = torch.get_num_threads()
    try:
        if device.type == "cpu":
            torch.set_num_threads(1)
        with torch.no_grad():
            for start in range(0, patches.shape[0], BATCH):
                x = patches[start : start + BATCH].to(device=device, dtype=torch.float32)
                h, w = x.shape[-2:]
                sh, sw = -(-h // stride) * stride, -(-w // stride) * stride
                if (sh, sw) != (h, w):
                    x = F.interpolate(x, size=(sh, sw), mode="bilinear", align_corners=False)
                out.append(encoder_features(net, x).double().cpu())
    finally:
        torch.set_num_threads(threads)
    if not out:
        width = net.config.width * len(FEATURE_LEVELS)
        return np.zeros((0, width), np.float64)
    return torch.cat(out).numpy()


def _stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, np.float64)
    mu = x.mean(0)
    cov = np.cov(x, rowvar=False) if x.shape[0] > 1 else np.zeros((x.shape[1], x.shape[1]))
    return mu, np.atleast_2d(cov)


def frechet_distance(a: np.ndarray, b: np.ndarray, ridge: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets:
    ``|mu_a - mu_b|^2 + tr(C_a + C_b - 2 (C_a C_b)^(1/2))``.

    ``ridge`` (times the mean feature variance, at least 1e-12) is added to both covariances'
    diagonals, so that rank-deficient covariances (fewer samples than dimensions) still have a
    well-defined square root; identical sets still give 0 up to rounding. The result is clamped
    at 0. At least one sample per set is needed (one sample gives a zero covariance).

    Shape:
        - a: :math:`(N, D)`, b: :math:`(M, D)`
        - output: float
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or not len(a) or not len(b):
        raise ValueError(f"frechet_distance: need two non-empty (N, D) sets of equal D, got {a.shape} and {b.shape}")
    mu_a, cov_a = _stats(a)
    mu_b, cov_b = _stats(b)
    d = cov_a.shape[0]
    scale = max(float(np.trace(cov_a) + np.trace(cov_b)) / (2 * d), 1e-12)
    eye = np.eye(d) * ridge * scale
    cov_a, cov_b = cov_a + eye, cov_b + eye
    covmean = scipy.linalg.sqrtm(cov_a @ cov_b)
    if isinstance(covmean, tuple):  # older SciPy returns (sqrtm, error estimate) with disp=False
        covmean = covmean[0]
    covmean = np.real(covmean)
    diff = mu_a - mu_b
    value = float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean))
    return max(value, 0.0)
