"""The fill generator as a :class:`vidfx.diffusion.task.DistillTask`, so the DMD, DMD2 and
Diffusion2GAN trainers of :mod:`vidfx.diffusion` can distil it.

The diffusion variable is the scaled residual image ``(truth - coarse) * residual_scale``
on the training crop, (3, S, S). The lazy decoder works on hole tokens only; this wrapper
gathers them from the image, runs the decoder and scatters its prediction back (tokens
outside the hole predict 0: the coarse fill is kept there). A condition is a dict of batch-
first tensors: ``coarse`` (B, 3, S, S), ``hole`` (B, 1, S, S) and ``truth`` (B, 3, S, S; only
the GAN's real side reads it).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .data import CropConfig, FillBatches
from .maskgen import ObjectShapes
from .model import LazyFill, gather_tokens, patchify, unpatchify


class FillDenoiser(nn.Module):
    """``forward(x_t, t, cond, features=False)``: x0 prediction of the residual image, with
    the decoder's final token states pooled over the hole as features (for GAN heads).

    Shape: x_t :math:`(B, 3, S, S)`, t :math:`(B,)` -> :math:`(B, 3, S, S)` (and :math:`(B, D)`).
    """

    def __init__(self, model: LazyFill):
        super().__init__()
        self.model = model
        self._states: torch.Tensor | None = None
        model.decoder.final_norm.register_forward_hook(self._keep_states)

    def _keep_states(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self._states = output

    def forward(
        self, x_t: torch.Tensor, t: torch.Tensor, cond: dict, features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        p = self.model.cfg.patch
        prep = self.model.prepare(cond["coarse"], cond["hole"])
        sel = prep["sel"]
        pred = self.model.denoise(gather_tokens(patchify(x_t, p), sel), t, prep)  # type: ignore[arg-type]
        pred = pred * sel.valid.unsqueeze(-1)  # type: ignore[union-attr]
        tokens = torch.zeros_like(patchify(x_t, p))
        tokens = tokens.scatter(1, sel.index.unsqueeze(-1).expand_as(pred), pred)  # type: ignore[union-attr]
        x0 = unpatchify(tokens, p, 3, sel.grid)  # type: ignore[union-attr]
        if not features:
            return x0
        assert self._states is not None
        valid = sel.valid.unsqueeze(-1).float()  # type: ignore[union-attr]
        pooled = (self._states * valid).sum(1) / valid.sum(1).clamp_min(1)
        return x0, pooled


class FillDistillTask:
    """The shipped (or given) fill model as a frozen teacher, with training crops as data.

    ``pictures``: training pictures (uint8 RGB, e.g. ``data.training_pictures()``);
    ``shapes``: object silhouettes for the holes (CamVid *train* labels).
    """

    def __init__(
        self, teacher: LazyFill, pictures: list[np.ndarray], shapes: ObjectShapes, crop: int = 96, seed: int = 0
    ):
        self.teacher_net = FillDenoiser(copy.deepcopy(teacher).eval().requires_grad_(False))
        self.base = teacher
        self.shape = (3, crop, crop)
        self.scale = teacher.cfg.residual_scale
        self._data = FillBatches(pictures, shapes, 1, CropConfig(size=crop), seed)
        self._stream = iter(self._data)

    def teacher(self, x_t: torch.Tensor, t: torch.Tensor, cond: dict) -> torch.Tensor:
        """The frozen teacher's x0 prediction. Shape: :math:`(B, 3, S, S)` -> same."""
        with torch.no_grad():
            out = self.teacher_net(x_t, t, cond)
        assert isinstance(out, torch.Tensor)
        return out

    def make_fake_score(self) -> nn.Module:
        """A trainable copy of the teacher (DMD's fake score)."""
        return FillDenoiser(copy.deepcopy(self.base).train().requires_grad_(True))

    def make_generator(self) -> nn.Module:
        """A trainable copy of the teacher (the student's network)."""
        return FillDenoiser(copy.deepcopy(self.base).train().requires_grad_(True))

    def sample_cond(self, batch: int) -> dict:
        """``batch`` training crops with holes: coarse fill, hole and truth."""
        items = [next(self._stream) for _ in range(batch)]
        truth, hole, coarse = (torch.cat(x) for x in zip(*items, strict=True))
        return {"coarse": coarse, "hole": hole, "truth": truth}

    def sample_real(self, batch: int, cond: dict) -> torch.Tensor:
        """The real residual of each condition's crop. Shape: :math:`(B, 3, S, S)`."""
        return (cond["truth"] - cond["coarse"]) * cond["hole"] * self.scale

    def features(self, x0: torch.Tensor, cond: dict) -> torch.Tensor:
        """The teacher's context encoder on the filled crop (the diffusion model's own features:
        the E-LatentLPIPS idea). Shape: :math:`(B, 3, S, S)` -> :math:`(B, D \\cdot S/p \\cdot S/p)`."""
        filled = cond["coarse"] + x0 / self.scale * cond["hole"]
        local, _ = self.teacher_net.model.encoder(filled, cond["hole"])
        return local.flatten(1)

    def random_augment(self, batch: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """A random horizontal flip and a shift of up to a token, per sample."""
        flip = torch.rand(batch) < 0.5
        shift = torch.randint(-8, 9, (batch, 2))

        def apply(x: torch.Tensor) -> torch.Tensor:
            out = torch.where(flip.view(-1, 1, 1, 1).to(x.device), x.flip(-1), x)
            return torch.stack([o.roll((int(dy), int(dx)), (-2, -1)) for o, (dy, dx) in zip(out, shift, strict=True)])

        return apply
