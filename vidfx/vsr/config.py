"""Model configurations: ``tiny`` (CPU default), ``base`` and ``paper``, for x2 and x4."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass
class VSRConfig:
    """Hyper-parameters of :class:`vidfx.vsr.arch.VideoSR`.

    The five VideoGigaGAN parts can each be switched off for ablations:
    ``use_unet`` (asymmetric U-Net; off = a plain conv stack at LR then pixel-shuffle),
    ``use_attention`` (temporal attention in decoder blocks), ``use_propagation``
    (flow-guided bidirectional recurrent propagation), ``use_blurpool`` (anti-aliased
    downsampling; off = stride-2 conv) and ``use_hf_shuttle`` (skips carry f - LowPass(f);
    off = skips carry f).
    """

    scale: int = 4
    channels: int = 32  # feature width at LR resolution
    extract_blocks: int = 1  # residual blocks in the per-frame feature extractor
    prop_blocks: int = 0  # extra residual blocks in each propagation branch
    enc_channels: tuple[int, ...] = (48,)  # widths of the encoder levels below LR (h/2, h/4, ...)
    dec_blocks: int = 1  # residual blocks per encoder/decoder level below LR
    lr_dec_blocks: int = 0  # residual blocks of the decoder level at LR
    attn_min_level: int = 1  # temporal attention in decoder levels >= this (0 = LR, 1 = h/2, ...)
    attn_heads: int = 2
    attn_radius: int = 3  # temporal attention sees frames t-radius..t+radius
    hr_channels: tuple[int, ...] = (12,)  # widths of the decoder stages above LR (2h, 4h, ...), last one excluded
    use_unet: bool = True
    use_attention: bool = True
    use_propagation: bool = True
    use_blurpool: bool = True
    use_hf_shuttle: bool = True

    def to_dict(self) -> dict:
        """Plain dict (stored in checkpoints)."""
        d = dataclasses.asdict(self)
        d["enc_channels"] = list(self.enc_channels)
        d["hr_channels"] = list(self.hr_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> VSRConfig:
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        for k in ("enc_channels", "hr_channels"):
            if k in kw:
                kw[k] = tuple(kw[k])
        return cls(**kw)


def make_config(size: str = "tiny", scale: int = 4, **overrides) -> VSRConfig:
    """The named configuration (``tiny``, ``base`` or ``paper``) at ``scale`` (2 or 4)."""
    if scale not in (2, 4):
        raise ValueError(f"scale must be 2 or 4, got {scale}")
    n_hr = {2: 0, 4: 1}[scale]  # base/paper x4: one conv stage at 2h before the last shuffle
    if size == "tiny":
        cfg = VSRConfig(
            scale=scale,
            channels=32,
            extract_blocks=1,
            prop_blocks=0,
            enc_channels=(48,),
            dec_blocks=1,
            lr_dec_blocks=0,
            attn_min_level=1,
            attn_heads=2,
            hr_channels=(),
        )  # straight pixel-shuffle to RGB: cheap at 1080p
    elif size == "base":
        cfg = VSRConfig(
            scale=scale,
            channels=64,
            extract_blocks=5,
            prop_blocks=3,
            enc_channels=(96, 128),
            dec_blocks=2,
            lr_dec_blocks=2,
            attn_min_level=0,
            attn_heads=4,
            hr_channels=(32,) * n_hr,
        )
    elif size == "paper":
        cfg = VSRConfig(
            scale=scale,
            channels=128,
            extract_blocks=10,
            prop_blocks=7,
            enc_channels=(256, 384, 512),
            dec_blocks=3,
            lr_dec_blocks=3,
            attn_min_level=0,
            attn_heads=8,
            hr_channels=(64,) * n_hr,
        )
    else:
        raise ValueError(f"unknown config {size!r} (tiny, base, paper)")
    return dataclasses.replace(cfg, **overrides)
