"""Image quality metrics for SR: Y-channel PSNR/SSIM (BT.601, like MATLAB ``rgb2ycbcr``),
warping error (temporal consistency) and a sharpness measure. Images are (3, H, W)
float tensors in 0..1 (or (H, W, 3) arrays where noted)."""

from __future__ import annotations

import cv2
import kornia
import numpy as np
import torch

from ..ops.colour import luma_studio
from ..ops.warp import backward_warp


def _y(img: torch.Tensor, border: int) -> torch.Tensor:
    """Y (16..235, float64) of a (3, H, W) tensor as (1, 1, H, W), ``border`` pixels cropped."""
    y = luma_studio(img.detach().cpu().double())[None]
    return y[..., border : y.shape[-2] - border, border : y.shape[-1] - border] if border else y


def quantize(img: torch.Tensor) -> torch.Tensor:
    """Round to 8-bit levels (as when the output is saved as PNG), back in 0..1."""
    return torch.round(img.clamp(0, 1) * 255.0) / 255.0


def psnr_y(out: torch.Tensor, gt: torch.Tensor, border: int = 4) -> float:
    """PSNR on Y (0..255 scale) after cropping ``border`` pixels on every side (inf when equal).

    Shape:
        - out, gt: :math:`(3, H, W)` RGB in 0..1
    """
    return float(kornia.metrics.psnr(_y(out, border), _y(gt, border), 255.0))


def ssim_y(out: torch.Tensor, gt: torch.Tensor, border: int = 4) -> float:
    """SSIM on Y (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, 'valid' region), in float64.

    Shape:
        - out, gt: :math:`(3, H, W)` RGB in 0..1
    """
    ssim = kornia.metrics.ssim(_y(out, border), _y(gt, border), 11, max_val=255.0, eps=0.0, padding="valid")
    return float(ssim.mean())


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
    # OpenCV's ksize=1 Laplacian is the 4-neighbour kernel; kornia.filters.laplacian's is the 8-neighbour one.
    return float(np.abs(cv2.Laplacian(_y(img, 0)[0, 0].numpy(), cv2.CV_64F, ksize=1)[1:-1, 1:-1]).mean())
