"""The translation generator: vidfx's one-step diffusion generator adapted as in img2img-turbo.

The backbone is the fill node's distilled one-step generator (:class:`vidfx.fill.model.LazyFill`,
the DMD/Diffusion2GAN student), used with every token of the canvas as a "hole":

- **Input image into the first layers.** The context encoder reads the input image as its
  canvas (hole channel all ones: everything is to be re-made), and the decoder's first layer,
  the token embedding that a one-step student feeds pure noise, is fed the input image's
  tokens instead (time fixed at t = 1, the student's only step). That layer is trained in full.
- **Zero-initialised skips, encoder -> decoder.** The encoder's stride-4 features (the stage
  before it pools to tokens) are unfolded per token and added, through a zero-initialised
  linear layer, to the decoder's last token states before its output head, so fine structure
  of the input can reach the output; at initialisation the skip adds nothing.
- **LoRA adapters.** The backbone is frozen. Rank-``lora_rank`` adapters (zero-initialised
  up-projection) sit on every linear layer of the decoder's blocks (self-attention q/kv/out,
  cross-attention q/kv/out, both MLP layers) and of the encoder's global-context blocks. Trained
  in full besides them: the token embedding, the output head and its modulation, the skip, the gate and
  the direction embedding.
- **Direction.** One network translates both ways (CycleGAN-Turbo uses one UNet with two text
  prompts): a learned direction embedding (zero-initialised) is added to the time embedding.

Two output forms (``TranslateConfig.output``):

- ``"affine"`` (RGB models trained since 2026-11-29): the last token states give, per token, a
  3x4 colour transform (zero-initialised: the identity). The transforms are interpolated
  bilinearly over the pixels and applied to the input, ``out = (I + A(x)) rgb(x) + b(x)``, as
  in local-affine colour models (HDRNet). The change follows the input's own edges and cannot
  add 8 px token patterns or texture, and the coefficients can be applied to a frame of any
  resolution (:meth:`TranslateNet.apply_affine`).
- ``"residual"``: the input plus the predicted residual (the fill generator's residual form)
  times a learned gate that starts at 0 (ReZero-style) for the pretrained backbone, where the
  head fed an image instead of noise would start with blocky 8 px errors. Edge models (which
  make the whole picture) use this form.
``pretrained=False`` builds the same architecture with a randomly initialised backbone that is
trained in full: the ablation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from vidfx.fill.model import LazyFill, LazyFillConfig, patchify, sincos_2d, timestep_embedding, unpatchify
from vidfx.ops.weights import Weights

FAMILY = "translate"  # weights-file family
WORK_SIZE = 256  # long side of the canvas the network works on (the node upsamples its change)
DIRECTIONS = ("day2dusk", "dusk2day")
GATE_SCALE = 50.0  # the residual gate's parameter is the gate / GATE_SCALE
AFFINE = 12  # coefficients of a 3x4 colour transform (``output="affine"``)


class LoRALinear(nn.Module):
    """``base(x) + (alpha / rank) * up(down(x))`` with ``base`` frozen and ``up`` starting at 0.

    Shape: :math:`(..., in)` -> :math:`(..., out)`.
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float | None = None):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.down = nn.Linear(base.in_features, rank, bias=False)
        self.up = nn.Linear(rank, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.up.weight)
        self.scale = (alpha or rank) / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * self.up(self.down(x))


def add_lora(module: nn.Module, rank: int) -> list[str]:
    """Replace every ``nn.Linear`` inside ``module`` by a :class:`LoRALinear` around it; returns
    the replaced layers' names."""
    names = []
    for name, child in list(module.named_modules()):
        for attr, sub in list(child.named_children()):
            if isinstance(sub, nn.Linear):
                setattr(child, attr, LoRALinear(sub, rank))
                names.append(f"{name}.{attr}" if name else attr)
    return names


@dataclass
class TranslateConfig:
    """A :class:`TranslateNet`: the backbone's config, the adapter rank, whether the backbone is
    the pretrained diffusion student (frozen, with LoRA) or trained from scratch."""

    backbone: LazyFillConfig = field(default_factory=LazyFillConfig)
    lora_rank: int = 8
    pretrained: bool = True
    in_channels: int = 3  # 3: an RGB image; 1: an edge map (the paired edges -> frame task)
    output: str = "residual"  # "residual" or "affine" (local colour transforms; RGB input only)

    def to_dict(self) -> dict:
        """Plain dict for a weights file."""
        d = asdict(self)
        d["backbone"] = self.backbone.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TranslateConfig:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d["backbone"] = LazyFillConfig.from_dict(d["backbone"])
        return cls(**d)


class TranslateNet(nn.Module):
    """One-step image-to-image generator (see the module docstring).

    ``backbone``: the diffusion student whose weights are adapted (None: a fresh random one,
    for the scratch ablation or before loading a translate weights file).
    """

    def __init__(self, cfg: TranslateConfig, backbone: LazyFill | None = None):
        super().__init__()
        self.cfg = cfg
        self.backbone = backbone if backbone is not None else LazyFill(cfg.backbone)
        b = cfg.backbone
        p, fine = b.patch, b.enc_channels[0]
        if cfg.pretrained:
            self.backbone.requires_grad_(False)
            self.lora_layers = add_lora(self.backbone.decoder.blocks, cfg.lora_rank)
            self.lora_layers += add_lora(self.backbone.encoder.ctx_blocks, cfg.lora_rank)
            dec = self.backbone.decoder
            for m in (dec.embed_noisy, dec.head, dec.final_mod):
                m.requires_grad_(True)
        else:
            self.lora_layers = []
        if cfg.in_channels != 3:
            # the first layer reads another kind of input: a fresh one (the encoder's stem too)
            self.backbone.decoder.embed_noisy = nn.Linear(cfg.in_channels * p * p, b.dim)
            enc = self.backbone.encoder
            enc.stem = nn.Conv2d(cfg.in_channels + 1, enc.stem.out_channels, 4, stride=4)
        self.skip = nn.Linear(fine * 4, b.dim)  # the stride-4 features of a token's 2x2 cells
        nn.init.zeros_(self.skip.weight)
        nn.init.zeros_(self.skip.bias)
        self.direction = nn.Embedding(len(DIRECTIONS), b.dim)
        nn.init.zeros_(self.direction.weight)
        # The residual's gate: 0 for the pretrained backbone (whose head, fed an image instead of
        # noise, starts far from the identity), so training starts from the input as it is; 1
        # from scratch (its head starts at zero, the same identity start).
        # Stored divided by GATE_SCALE: Adam moves a parameter by about its learning rate per step,
        # and the gate has to travel from 0 to about 1 within a few hundred steps.
        self.gate = nn.Parameter(torch.tensor(0.0 if cfg.pretrained else 1.0 / GATE_SCALE))
        if cfg.output not in ("residual", "affine") or (cfg.output == "affine" and cfg.in_channels != 3):
            raise ValueError(f"translate: output {cfg.output!r} needs an RGB input ('residual' or 'affine')")
        if cfg.output == "affine":
            self.affine_head = nn.Linear(b.dim, AFFINE)
            nn.init.zeros_(self.affine_head.weight)
            nn.init.zeros_(self.affine_head.bias)
        self._fine: torch.Tensor | None = None
        self.backbone.encoder.stage2.register_forward_hook(self._keep_fine)

    def _keep_fine(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self._fine = output

    def tokens(self, image: torch.Tensor, direction: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's last token states, before its output head.

        Shape:
            - image: :math:`(B, C, H, W)` in 0..1, H and W multiples of the patch (8)
            - direction: :math:`(B,)` long (indexes :data:`DIRECTIONS`; 0 when None)
            - output: :math:`(B, N, D)`, N = (H / 8) (W / 8) tokens in row-major order
        """
        bb, dec = self.backbone, self.backbone.decoder
        b, c, h, w = image.shape
        p, d = bb.cfg.patch, bb.cfg.dim
        grid = (h // p, w // p)
        hole = torch.ones(b, 1, h, w, device=image.device, dtype=image.dtype)
        local, context = bb.encoder(image, hole)
        assert self._fine is not None
        fine = F.pixel_unshuffle(self._fine, 2).flatten(2).transpose(1, 2)  # (B, N, 4 * C2)
        tokens = patchify((image - 0.5) * bb.cfg.residual_scale, p)
        rows, cols = torch.meshgrid(
            torch.arange(grid[0], device=image.device), torch.arange(grid[1], device=image.device), indexing="ij"
        )
        x = dec.embed_noisy(tokens) + dec.embed_mask(torch.ones(b, grid[0] * grid[1], p * p, device=image.device))
        x = x + dec.embed_local(local.flatten(2).transpose(1, 2)) + sincos_2d(rows.flatten(), cols.flatten(), d)
        if direction is None:
            direction = torch.zeros(b, dtype=torch.long, device=image.device)
        temb = dec.time_mlp(timestep_embedding(torch.ones(b, device=image.device), d)) + self.direction(direction)
        valid = torch.ones(b, x.shape[1], dtype=torch.bool, device=image.device)
        for block in dec.blocks:
            x = block(x, temb, context, valid)
        scale, shift = dec.final_mod(temb).unsqueeze(1).chunk(2, dim=-1)
        return dec.final_norm(x) * (1 + scale) + shift + self.skip(fine)

    def coefficients(self, image: torch.Tensor, direction: torch.Tensor | None = None) -> torch.Tensor:
        """The per-token colour transforms of an ``"affine"`` model (0 = the identity).

        Shape:
            - image: :math:`(B, 3, H, W)` in 0..1, H and W multiples of the patch (8)
            - output: :math:`(B, 12, H / 8, W / 8)`: rows of the 3x4 matrix ``A | b``
        """
        p = self.backbone.cfg.patch
        grid = (image.shape[2] // p, image.shape[3] // p)
        coeffs = self.affine_head(self.tokens(image, direction))
        return coeffs.transpose(1, 2).reshape(image.shape[0], AFFINE, *grid)

    @staticmethod
    def apply_affine(coeffs: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """``(I + A) rgb + b`` with the coefficients interpolated bilinearly to the image's size
        (any size: the coefficient grid spans the whole image). Not clamped.

        Shape:
            - coeffs: :math:`(B, 12, h, w)`
            - image: :math:`(B, 3, H, W)`
            - output: :math:`(B, 3, H, W)`
        """
        if coeffs.shape[2:] != image.shape[2:]:
            coeffs = F.interpolate(coeffs, size=image.shape[2:], mode="bilinear", align_corners=False)
        matrix, offset = coeffs[:, :9], coeffs[:, 9:]
        change = torch.einsum("bijhw,bjhw->bihw", matrix.unflatten(1, (3, 3)), image)
        return image + change + offset

    def forward(self, image: torch.Tensor, direction: torch.Tensor | None = None) -> torch.Tensor:
        """Translate ``image``; ``direction`` indexes :data:`DIRECTIONS` (0 when None).

        Shape:
            - image: :math:`(B, C, H, W)` in 0..1, C = ``in_channels``; H and W multiples of the
              patch (8)
            - direction: :math:`(B,)` long
            - output: :math:`(B, 3, H, W)` in 0..1
        """
        if self.cfg.output == "affine":
            return self.apply_affine(self.coefficients(image, direction), image).clamp(0, 1)
        bb = self.backbone
        b, c, h, w = image.shape
        grid = (h // bb.cfg.patch, w // bb.cfg.patch)
        x = self.tokens(image, direction)
        head = unpatchify(self.backbone.decoder.head(x), bb.cfg.patch, 3, grid)
        residual = self.gate * GATE_SCALE * head / bb.cfg.residual_scale
        base = image if c == 3 else torch.full_like(residual, 0.5)
        return (base + residual).clamp(0, 1)


def build_translate(weights: Weights) -> TranslateNet:
    """A :class:`TranslateNet` from a weights file's config (``ops.weights.load_model``)."""
    return TranslateNet(TranslateConfig.from_dict(weights.config))
