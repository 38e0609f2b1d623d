"""The classic colour-transfer baseline of the translation (Reinhard, Ashikhmin, Gooch and Shirley,
"Color Transfer between Images", 2001), in CIE Lab.

Each Lab channel of the picture is shifted and scaled so that its mean and standard deviation
become the target's: ``(x - mu_s) / sigma_s * sigma_t + mu_t``. Reinhard et al. work in Ruderman's
l-alpha-beta space; CIE Lab (D65, sRGB input, ``kornia.color.rgb_to_lab`` / ``lab_to_rgb``, the
colour library :mod:`vidfx.ops.colour` uses) is the usual stand-in and the project already has
it. For the translation the target statistics are those of the dusk training frames
(:func:`vidfx.translate.data.domain_files` ``("dusk", "train")``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import kornia
import numpy as np
import torch

MIN_STD = 1e-3  # Lab units; a flatter source channel is only shifted, not scaled


def _as_float(image: np.ndarray) -> np.ndarray:
    """uint8 (0..255) or float (0..1) RGB as float32 0..1."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    return np.asarray(image, np.float32)


def rgb_to_lab(image: np.ndarray) -> np.ndarray:
    """sRGB -> CIE Lab (D65) through ``kornia.color.rgb_to_lab``.

    Shape:
        - image: :math:`(H, W, 3)` uint8 or float 0..1 RGB
        - output: float32 :math:`(H, W, 3)`: L 0..100, a and b about -128..127
    """
    x = torch.from_numpy(np.ascontiguousarray(_as_float(image))).permute(2, 0, 1)
    return np.ascontiguousarray(kornia.color.rgb_to_lab(x).permute(1, 2, 0).numpy())


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """CIE Lab (D65) -> sRGB through ``kornia.color.lab_to_rgb``, clipped to 0..1.

    Shape:
        - lab: float :math:`(H, W, 3)`
        - output: float32 :math:`(H, W, 3)`, 0..1
    """
    x = torch.from_numpy(np.ascontiguousarray(lab, np.float32)).permute(2, 0, 1)
    return np.ascontiguousarray(kornia.color.lab_to_rgb(x, clip=True).permute(1, 2, 0).numpy())


@dataclass(frozen=True)
class LabStats:
    """Per-channel mean and standard deviation of pictures in CIE Lab (L, a, b).

    Shape:
        - mean, std: float64 :math:`(3,)`
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def of(cls, images: Sequence[np.ndarray] | np.ndarray) -> LabStats:
        """Statistics pooled over all pixels of ``images`` (every pixel weighs the same, so a larger
        picture counts more).

        Shape:
            - images: a sequence of :math:`(H, W, 3)` RGB pictures (uint8, or float 0..1; sizes may
              differ) or one array :math:`(N, H, W, 3)`
        """
        total = np.zeros(3, np.float64)
        squares = np.zeros(3, np.float64)
        count = 0
        for image in images:
            lab = rgb_to_lab(image).reshape(-1, 3).astype(np.float64)
            total += lab.sum(0)
            squares += (lab**2).sum(0)
            count += lab.shape[0]
        if not count:
            raise ValueError("LabStats.of: no pixels (empty list of pictures)")
        mean = total / count
        return cls(mean, np.sqrt(np.maximum(squares / count - mean**2, 0.0)))


def reinhard_transfer(image: np.ndarray, source: LabStats | None, target: LabStats) -> np.ndarray:
    """Reinhard colour transfer of one picture: each Lab channel ``(x - mu_s) / sigma_s * sigma_t
    + mu_t``, back to RGB and clipped to 0..1.

    ``source`` are the statistics the picture is taken to have: None = the picture's own (the
    classic still-image transfer); statistics pooled over a whole clip give every frame the same
    mapping (no flicker from per-frame statistics). A source channel flatter than ``MIN_STD`` is
    divided by ``MIN_STD``.

    Shape:
        - image: float32 :math:`(H, W, 3)` RGB 0..1 (uint8 is accepted too)
        - output: float32 :math:`(H, W, 3)` RGB 0..1
    """
    lab = rgb_to_lab(image).astype(np.float64)
    if source is None:
        flat = lab.reshape(-1, 3)
        source = LabStats(flat.mean(0), flat.std(0))
    src = source
    scale = target.std / np.maximum(src.std, MIN_STD)
    return lab_to_rgb((lab - src.mean) * scale + target.mean)
