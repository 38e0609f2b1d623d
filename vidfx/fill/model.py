"""LazyDiffusion-style generative fill: a context encoder reads the whole canvas once, a
diffusion transformer decoder denoises only the tokens that touch the hole.

The canvas is the frame at the working resolution with its hole pre-filled by a cheap
inpainting (``coarse``, OpenCV's Telea). The decoder generates the residual between the truth
and that coarse fill, token by token (a token is a ``patch`` x ``patch`` block of pixels), so
its cost grows with the number of hole tokens, not with the canvas (LazyDiffusion,
Nitzan et al. 2024). The encoder gives each hole token two kinds of context: the local
feature map at the token's own position, and a compact set of global context tokens (the
feature map pooled ``ctx_stride`` times and mixed by a few transformer layers), which every
decoder layer cross-attends to.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from vidfx.diffusion.schedule import ddim_sample, renoise_sample


@dataclass
class LazyFillConfig:
    """Sizes of a :class:`LazyFill` model. The defaults are the CPU-small model that ships;
    ``paper()`` gives a LazyDiffusion-like size for a GPU."""

    patch: int = 8  # token size in working-resolution pixels (the encoder's stride)
    enc_channels: tuple[int, int] = (48, 128)  # encoder channels at strides 4 and 8
    dim: int = 128  # transformer width
    ctx_stride: int = 4  # global context tokens: the token grid pooled by this factor
    ctx_layers: int = 2
    dec_layers: int = 4
    heads: int = 4
    mlp_ratio: float = 2.0
    residual_scale: float = 4.0  # the decoder's x0 is (truth - coarse) * residual_scale

    @classmethod
    def paper(cls) -> LazyFillConfig:
        """A large configuration (hundreds of M parameters scale needs a GPU and much data)."""
        return cls(enc_channels=(128, 256), dim=512, ctx_layers=8, dec_layers=12, heads=8, mlp_ratio=4.0)

    def to_dict(self) -> dict:
        """Plain dict for a weights file."""
        d = asdict(self)
        d["enc_channels"] = list(self.enc_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> LazyFillConfig:
        """Inverse of :meth:`to_dict` (unknown keys are an error)."""
        d = dict(d)
        d["enc_channels"] = tuple(d["enc_channels"])
        return cls(**d)


def sincos_2d(rows: torch.Tensor, cols: torch.Tensor, dim: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine embeddings of token positions (the decoder works on any canvas).

    Shape:
        - rows, cols: :math:`(...)` integer or float token coordinates
        - output: :math:`(..., dim)`
    """
    quarter = dim // 4
    freq = torch.exp(-math.log(1000.0) * torch.arange(quarter, device=rows.device) / quarter)
    parts = []
    for coord in (rows, cols):
        angle = coord.float().unsqueeze(-1) * freq
        parts += [angle.sin(), angle.cos()]
    out = torch.cat(parts, dim=-1)
    return F.pad(out, (0, dim - out.shape[-1]))


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of diffusion times in [0, 1].

    Shape:
        - t: :math:`(B,)`
        - output: :math:`(B, dim)`
    """
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    angle = (t.float() * 1000.0).unsqueeze(-1) * freq
    return torch.cat([angle.sin(), angle.cos()], dim=-1)


class ResBlock(nn.Module):
    """Two 3x3 convolutions with GroupNorm and SiLU, and a skip."""

    def __init__(self, channels: int, dilation: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(8, channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation),
            nn.GroupNorm(8, channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Attention(nn.Module):
    """Multi-head attention (self or cross) through ``scaled_dot_product_attention``."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, key_valid: torch.Tensor | None = None) -> torch.Tensor:
        """Shape: x :math:`(B, N, D)`, context :math:`(B, M, D)`, key_valid :math:`(B, M)` bool."""
        b, n, d = x.shape
        h = self.heads
        q = self.q(x).view(b, n, h, d // h).transpose(1, 2)
        k, v = self.kv(context).view(b, context.shape[1], 2, h, d // h).permute(2, 0, 3, 1, 4)
        mask = None if key_valid is None else key_valid[:, None, None, :]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class TransformerBlock(nn.Module):
    """Pre-norm self-attention + MLP (the context encoder's global mixing)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(), nn.Linear(int(dim * mlp_ratio), dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.attn(y, y)
        return x + self.mlp(self.norm2(x))


class DecoderBlock(nn.Module):
    """DiT block with adaLN-zero time conditioning: self-attention among the hole tokens,
    cross-attention to the global context tokens, MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.self_attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = Attention(dim, heads)
        self.norm3 = nn.LayerNorm(dim, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(), nn.Linear(int(dim * mlp_ratio), dim))
        self.modulation = nn.Linear(dim, 6 * dim)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Shape: x :math:`(B, K, D)`, temb :math:`(B, D)`, context :math:`(B, M, D)`, valid :math:`(B, K)`."""
        s1, b1, g1, s2, b2, g2 = self.modulation(temb).unsqueeze(1).chunk(6, dim=-1)
        y = self.norm1(x) * (1 + s1) + b1
        x = x + g1 * self.self_attn(y, y, valid)
        x = x + self.cross_attn(self.norm2(x), context)
        y = self.norm3(x) * (1 + s2) + b2
        return x + g2 * self.mlp(y)


class InvertedResidual(nn.Module):
    """MobileNet-style block: 1x1 expand, depthwise 3x3 (dilated), 1x1 project, skip."""

    def __init__(self, channels: int, dilation: int = 1, expansion: int = 2):
        super().__init__()
        hidden = channels * expansion
        self.body = nn.Sequential(
            nn.GroupNorm(8, channels),
            nn.Conv2d(channels, hidden, 1),
            nn.SiLU(),
            nn.Conv2d(hidden, hidden, 3, padding=dilation, dilation=dilation, groups=hidden),
            nn.SiLU(),
            nn.Conv2d(hidden, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ContextEncoder(nn.Module):
    """Reads the whole canvas once: local features at token resolution and global context tokens.

    Input channels: the coarse-filled image (3, centred on 0) and the hole mask (1). A 4x4
    patch stem, a full convolution block at stride 4, then cheap inverted-residual blocks at
    the token stride (8) with growing dilation for a wide receptive field.
    """

    def __init__(self, cfg: LazyFillConfig):
        super().__init__()
        c2, c3 = cfg.enc_channels
        self.stem = nn.Conv2d(4, c2, 4, stride=4)
        self.stage2 = ResBlock(c2)
        self.down3 = nn.Conv2d(c2, c3, 2, stride=2)
        self.stage3 = nn.Sequential(*(InvertedResidual(c3, dilation=d) for d in (1, 2, 4, 1)))
        self.to_tokens = nn.Conv2d(c3, cfg.dim, 1)
        self.ctx_stride = cfg.ctx_stride
        self.ctx_blocks = nn.ModuleList(
            TransformerBlock(cfg.dim, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.ctx_layers)
        )
        self.ctx_norm = nn.LayerNorm(cfg.dim)

    def forward(
        self, coarse: torch.Tensor, hole: torch.Tensor, offset: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Shape:
        - coarse: :math:`(B, 3, H, W)` in 0..1, H and W multiples of ``patch``
        - hole: :math:`(B, 1, H, W)` float 0/1
        - offset: :math:`(B, 2)` token-grid offset added to positions (training shifts it at
          random so that only relative positions are learnt), or None
        - output: local features :math:`(B, D, H/p, W/p)`, global tokens :math:`(B, M, D)`
        """
        x = torch.cat([coarse - 0.5, hole], dim=1)
        x = self.stage2(self.stem(x))
        x = self.stage3(self.down3(x))
        local = self.to_tokens(x)
        pooled = F.adaptive_avg_pool2d(
            local,
            (max(1, math.ceil(local.shape[2] / self.ctx_stride)), max(1, math.ceil(local.shape[3] / self.ctx_stride))),
        )
        b, d, gh, gw = pooled.shape
        rows, cols = torch.meshgrid(
            torch.arange(gh, device=x.device) * self.ctx_stride,
            torch.arange(gw, device=x.device) * self.ctx_stride,
            indexing="ij",
        )
        rows, cols = rows.flatten()[None], cols.flatten()[None]
        if offset is not None:
            rows, cols = rows + offset[:, :1], cols + offset[:, 1:]
        tokens = pooled.flatten(2).transpose(1, 2) + sincos_2d(rows, cols, d)
        for block in self.ctx_blocks:
            tokens = block(tokens)
        return local, self.ctx_norm(tokens)


@dataclass
class TokenSelection:
    """Which tokens of a canvas the decoder works on.

    ``index`` (B, K) flat token indices (row-major over the token grid), ``valid`` (B, K)
    marks real entries (rows of the batch have different counts; the rest is padding).
    """

    index: torch.Tensor
    valid: torch.Tensor
    grid: tuple[int, int] = field(default=(0, 0))

    @property
    def count(self) -> int:
        """Number of real tokens in the whole batch (what the decoder's cost follows)."""
        return int(self.valid.sum())


def hole_tokens(hole: torch.Tensor, patch: int) -> torch.Tensor:
    """Tokens that contain at least one hole pixel.

    Shape:
        - hole: :math:`(B, 1, H, W)` float or bool, H and W multiples of ``patch``
        - output: :math:`(B, H/p * W/p)` bool, row-major
    """
    return F.max_pool2d(hole.float(), patch).flatten(1) > 0


def select_tokens(chosen: torch.Tensor, grid: tuple[int, int]) -> TokenSelection:
    """Gather indices of the chosen tokens, padded to the largest count in the batch.

    Shape:
        - chosen: :math:`(B, N)` bool
    """
    counts = chosen.sum(1)
    k = max(1, int(counts.max()))
    order = torch.argsort((~chosen).to(torch.int8), dim=1, stable=True)  # chosen tokens first, in order
    index = order[:, :k]
    valid = torch.arange(k, device=chosen.device)[None] < counts[:, None]
    return TokenSelection(index, valid, grid)


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """Image to tokens. Shape: :math:`(B, C, H, W)` -> :math:`(B, H/p * W/p, C p p)`."""
    b, c, h, w = x.shape
    x = x.view(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(b, (h // patch) * (w // patch), c * patch * patch)


def unpatchify(tokens: torch.Tensor, patch: int, channels: int, grid: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`patchify`. Shape: :math:`(B, N, C p p)` -> :math:`(B, C, H, W)`."""
    b = tokens.shape[0]
    gh, gw = grid
    x = tokens.view(b, gh, gw, channels, patch, patch)
    return x.permute(0, 3, 1, 4, 2, 5).reshape(b, channels, gh * patch, gw * patch)


def gather_tokens(tokens: torch.Tensor, sel: TokenSelection) -> torch.Tensor:
    """Pick the selected tokens. Shape: :math:`(B, N, C)` -> :math:`(B, K, C)`."""
    return torch.gather(tokens, 1, sel.index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


def scatter_tokens(values: torch.Tensor, sel: TokenSelection, patch: int, channels: int) -> torch.Tensor:
    """Inverse of :func:`gather_tokens` followed by :func:`unpatchify`: an image that holds
    ``values`` at the selected tokens (padding entries dropped) and 0 everywhere else.

    Shape: :math:`(B, K, C p p)` -> :math:`(B, C, H, W)`.
    """
    values = values * sel.valid.unsqueeze(-1)
    b, gh, gw = values.shape[0], *sel.grid
    tokens = values.new_zeros(b, gh * gw, values.shape[-1])
    tokens = tokens.scatter(1, sel.index.unsqueeze(-1).expand_as(values), values)
    return unpatchify(tokens, patch, channels, sel.grid)


class LazyDecoder(nn.Module):
    """The diffusion transformer over hole tokens only: predicts each token's clean residual."""

    def __init__(self, cfg: LazyFillConfig):
        super().__init__()
        pixels = cfg.patch * cfg.patch
        self.cfg = cfg
        self.embed_noisy = nn.Linear(3 * pixels, cfg.dim)
        self.embed_mask = nn.Linear(pixels, cfg.dim)
        self.embed_local = nn.Linear(cfg.dim, cfg.dim)
        self.time_mlp = nn.Sequential(nn.Linear(cfg.dim, cfg.dim), nn.SiLU(), nn.Linear(cfg.dim, cfg.dim))
        self.blocks = nn.ModuleList(DecoderBlock(cfg.dim, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.dec_layers))
        self.final_norm = nn.LayerNorm(cfg.dim, elementwise_affine=False)
        self.final_mod = nn.Linear(cfg.dim, 2 * cfg.dim)
        self.head = nn.Linear(cfg.dim, 3 * pixels)
        nn.init.zeros_(self.final_mod.weight)
        nn.init.zeros_(self.final_mod.bias)
        # a fresh model adds nothing to the coarse fill: training starts from Telea and improves on it
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(
        self,
        noisy: torch.Tensor,
        t: torch.Tensor,
        local: torch.Tensor,
        mask_pixels: torch.Tensor,
        positions: torch.Tensor,
        context: torch.Tensor,
        valid: torch.Tensor,
    ) -> torch.Tensor:
        """Predict clean residual tokens.

        Shape:
            - noisy: :math:`(B, K, 3 p p)` noisy residual tokens
            - t: :math:`(B,)` diffusion time
            - local: :math:`(B, K, D)` encoder features at the tokens
            - mask_pixels: :math:`(B, K, p p)` which pixels of each token are hole
            - positions: :math:`(B, K, 2)` token (row, column)
            - context: :math:`(B, M, D)` global context tokens
            - valid: :math:`(B, K)` bool, padding excluded from attention
            - output: :math:`(B, K, 3 p p)`
        """
        d = self.cfg.dim
        x = self.embed_noisy(noisy) + self.embed_mask(mask_pixels) + self.embed_local(local)
        x = x + sincos_2d(positions[..., 0], positions[..., 1], d)
        temb = self.time_mlp(timestep_embedding(t, d))
        for block in self.blocks:
            x = block(x, temb, context, valid)
        scale, shift = self.final_mod(temb).unsqueeze(1).chunk(2, dim=-1)
        return self.head(self.final_norm(x) * (1 + scale) + shift)


class LazyFill(nn.Module):
    """Context encoder + lazy diffusion decoder (see the module docstring)."""

    def __init__(self, cfg: LazyFillConfig | None = None):
        super().__init__()
        self.cfg = cfg or LazyFillConfig()
        self.encoder = ContextEncoder(self.cfg)
        self.decoder = LazyDecoder(self.cfg)

    def prepare(
        self, coarse: torch.Tensor, hole: torch.Tensor, lazy: bool = True, offset: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor | TokenSelection]:
        """Run the encoder once and gather what the decoder needs for the hole tokens
        (every token when ``lazy`` is False: the full-canvas decoder the benchmark compares to).

        Shape:
            - coarse: :math:`(B, 3, H, W)`, hole :math:`(B, 1, H, W)`; H, W multiples of ``patch``
            - offset: :math:`(B, 2)` token position offset (training only), or None
        """
        p = self.cfg.patch
        grid = (coarse.shape[2] // p, coarse.shape[3] // p)
        local, context = self.encoder(coarse, hole, offset)
        every = torch.ones(coarse.shape[0], grid[0] * grid[1], dtype=torch.bool, device=coarse.device)
        chosen = hole_tokens(hole, p) if lazy else every
        sel = select_tokens(chosen, grid)
        local_tokens = gather_tokens(local.flatten(2).transpose(1, 2), sel)
        mask_pixels = gather_tokens(patchify(hole.float(), p), sel)
        positions = torch.stack([sel.index // grid[1], sel.index % grid[1]], dim=-1)
        if offset is not None:
            positions = positions + offset[:, None, :]
        return {"sel": sel, "local": local_tokens, "mask": mask_pixels, "pos": positions, "context": context}

    def denoise(self, noisy: torch.Tensor, t: torch.Tensor, prep: dict) -> torch.Tensor:
        """One decoder call on prepared tokens. Shape: noisy :math:`(B, K, 3 p p)` -> same."""
        return self.decoder(noisy, t, prep["local"], prep["mask"], prep["pos"], prep["context"], prep["sel"].valid)

    @torch.no_grad()
    def generate(
        self,
        coarse: torch.Tensor,
        hole: torch.Tensor,
        noise: torch.Tensor,
        steps: int,
        lazy: bool = True,
        fresh: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Fill the hole: ``coarse`` plus the sampled residual inside the hole tokens.

        ``noise`` is drawn on the whole token grid (so a fixed noise field gives the same
        sample at the same place in every frame); only the hole tokens' share is used. The
        sampler is DDIM, or with ``fresh`` (``steps - 1`` more fields like ``noise``) the
        re-noising sampler of a multi-step DMD2 student (:func:`renoise_sample`).

        Shape:
            - coarse: :math:`(B, 3, H, W)` in 0..1, hole :math:`(B, 1, H, W)`
            - noise: :math:`(B, 3, H, W)` standard normal
            - output: :math:`(B, 3, H, W)`, equal to ``coarse`` outside the hole tokens
        """
        p = self.cfg.patch
        prep = self.prepare(coarse, hole, lazy)
        sel: TokenSelection = prep["sel"]  # type: ignore[assignment]
        noise_tokens = gather_tokens(patchify(noise, p), sel)
        denoise = lambda x, t: self.denoise(x, t, prep)  # noqa: E731
        if fresh is None:
            residual = ddim_sample(denoise, noise_tokens, steps)
        else:
            residual = renoise_sample(denoise, noise_tokens, steps, [gather_tokens(patchify(f, p), sel) for f in fresh])
        return (coarse + scatter_tokens(residual, sel, p, 3) / self.cfg.residual_scale).clamp(0, 1)
