"""Image quality metrics for SR: Y-channel PSNR/SSIM (BT.601, like MATLAB ``rgb2ycbcr``),
warping error (temporal consistency) and a sharpness measure. Images are (3, H, W)
float tensors in 0..1 (or (H, W, 3) arrays where noted)."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..ops.colour import luma_studio
from ..ops.warp import backward_warp


def _y_np(img: torch.Tensor, border: int) -> np.ndarray:
    """Y (16..235, float64 numpy) of a (3, H, W) tensor, ``border`` pixels cropped."""
    y = luma_studio(img.detach().cpu().double())[0].numpy()
    return y[border : y.shape[0] - border, border : y.shape[1] - border] if border else y


def quantize(img: torch.Tensor) -> torch.Tensor:
    """Round to 8-bit levels (as when the output is saved as PNG), back in 0..1."""
    return torch.round(img.clamp(0, 1) * 255.0) / 255.0


def _crop(x: torch.Tensor, border: int) -> torch.Tensor:
    return x[..., border : x.shape[-2] - border, border : x.shape[-1] - border] if border else x


def psnr_y(out: torch.Tensor, gt: torch.Tensor, border: int = 4) -> float:
    """PSNR on Y (0..255 scale) after cropping ``border`` pixels on every side."""
    a, b = _y_np(out, border), _y_np(gt, border)
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def ssim_y(out: torch.Tensor, gt: torch.Tensor, border: int = 4) -> float:
    """SSIM on Y (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, 'valid' region),
    in float64 with separable filtering (OpenCV)."""
    import cv2

    a, b = _y_np(out, border), _y_np(gt, border)
    g = cv2.getGaussianKernel(11, 1.5, cv2.CV_64F)

    def filt(x: np.ndarray) -> np.ndarray:
        return cv2.sepFilter2D(x, cv2.CV_64F, g, g, borderType=cv2.BORDER_REFLECT)[5:-5, 5:-5]

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = filt(a), filt(b)
    saa = filt(a * a) - mu_a**2
    sbb = filt(b * b) - mu_b**2
    sab = filt(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (saa + sbb + c2))
    return float(s.mean())


def warp_error(
    prev_out: torch.Tensor,
    cur_out: torch.Tensor,
    flow_cur_to_prev: np.ndarray,
    occlusion_mask: np.ndarray | None = None,
) -> float:
    """Mean squared RGB difference (x1000, 0..1 scale) between ``cur_out`` and
    ``prev_out`` warped into the current frame with flow computed on the ground truth.
    ``occlusion_mask`` (H, W) bool marks pixels to ignore (forward-backward check)."""
    flow = torch.from_numpy(flow_cur_to_prev.transpose(2, 0, 1)).float()[None]
    warped = backward_warp(prev_out[None].float(), flow)[0]
    diff = ((warped - cur_out.float()) ** 2).mean(0)
    if occlusion_mask is not None:
        keep = torch.from_numpy(~occlusion_mask)
        diff = diff[keep] if keep.any() else diff
    return float(diff.mean()) * 1000.0


def sharpness(img: torch.Tensor) -> float:
    """Mean absolute Laplacian of Y (0..255 scale): higher = more fine detail."""
    import cv2

    return float(np.abs(cv2.Laplacian(_y_np(img, 0), cv2.CV_64F, ksize=1)[1:-1, 1:-1]).mean())
