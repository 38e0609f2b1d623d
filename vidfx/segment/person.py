"""Person matte from MediaPipe's shipped selfie-segmentation model (offline, CPU)."""

from __future__ import annotations

import numpy as np
import torch

from vidfx.core.errors import ModelError


class PersonSegmenter:
    """Wraps ``mediapipe.solutions.selfie_segmentation`` (its model files ship in the wheel).

    ``model_selection`` 0 is the general 256x256 model, 1 the faster landscape 144x256 one.
    """

    def __init__(self, model_selection: int = 0):
        try:
            import mediapipe as mp

            self._seg = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=model_selection)
        except Exception as exc:  # missing package or model file
            raise ModelError(
                f"segment: MediaPipe selfie segmentation unavailable: {type(exc).__name__}: {exc}"
            ) from None

    def probability(self, rgb: torch.Tensor) -> torch.Tensor:
        """(H, W) float person probability for a (3, H, W) 0..1 picture."""
        image = (rgb.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        mask = self._seg.process(np.ascontiguousarray(image)).segmentation_mask
        return torch.from_numpy(np.array(mask, dtype=np.float32, copy=True))

    def logits(self, rgb: torch.Tensor) -> torch.Tensor:
        """(2, H, W) scores (background, person) as log-probabilities, for the smoother."""
        p = self.probability(rgb).clamp(1e-4, 1 - 1e-4)
        return torch.stack([torch.log1p(-p), torch.log(p)])

    def close(self) -> None:
        """Release the MediaPipe graph."""
        self._seg.close()
