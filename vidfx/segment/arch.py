"""Modified-MBConv U-Net (after Chen et al. 2024, "Multi-Scale Semantic Segmentation with
Modified MBConv Blocks").

Three ideas from the paper:
- MBConv blocks whose 1x1 expansion convolution is a 3x3 convolution (more spatial context
  per block, at the cost of FLOPs in the expansion);
- a U-Net in which every resolution level has the same width and the same number of blocks
  (encoder and decoder branches of equal capacity);
- a stem that downsamples by 4 straight away, so the full-resolution activations that
  dominate memory are never held at full width.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class SegNetConfig:
    """Size of a MBConvUNet.

    width: channels at every level (equal capacity); depth: modified-MBConv blocks per level
    in the encoder and again in the decoder; levels: resolution levels after the stem (the
    first is at 1/4 resolution, each next one halves it); expansion: MBConv expansion ratio.
    """

    num_classes: int = 11
    width: int = 32
    depth: int = 2
    levels: int = 4
    expansion: int = 3
    stem_width: int = 16
    se: bool = True

    @property
    def stride(self) -> int:
        """Input sides must be multiples of this (stem /4, then /2 per extra level)."""
        return 4 * 2 ** (self.levels - 1)

    def to_dict(self) -> dict:
        """Plain dict, for checkpoints."""
        return asdict(self)


# Configurations: `cpu` is the shipped default; `paper` is a wider/deeper one for GPUs.
CONFIGS = {
    "cpu": SegNetConfig(),
    "cpu_small": SegNetConfig(width=24, depth=1),
    "paper": SegNetConfig(width=128, depth=3, levels=5, expansion=4, stem_width=32),
}


def conv_bn_act(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    """Convolution, batch norm and (optionally) SiLU."""
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.SiLU(inplace=True))
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """Channel attention: global pool, bottleneck, sigmoid gate."""

    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = self.expand(F.silu(self.reduce(s)))
        return x * torch.sigmoid(s)


class ModifiedMBConv(nn.Module):
    """MBConv with a 3x3 (not 1x1) expansion convolution.

    expand 3x3 (cin -> cin*expansion) -> depthwise 3x3 -> squeeze-excite -> project 1x1
    (-> cout); the input is added back when the shapes match (stride 1, cin == cout).
    """

    def __init__(self, cin: int, cout: int, expansion: int = 3, stride: int = 1, se: bool = True):
        super().__init__()
        hidden = cin * expansion
        self.expand = conv_bn_act(cin, hidden, k=3)
        self.depthwise = conv_bn_act(hidden, hidden, k=3, stride=stride, groups=hidden)
        self.se = SqueezeExcite(hidden, max(4, cin // 4)) if se else nn.Identity()
        self.project = conv_bn_act(hidden, cout, k=1, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.depthwise(self.expand(x))))
        return x + y if self.residual else y


class MBConvUNet(nn.Module):
    """U-Net of modified-MBConv blocks with equal width and depth at every level.

    forward(x) takes RGB in 0..1, (B, 3, H, W) with H and W multiples of ``config.stride``,
    and returns class logits (B, num_classes, H, W).
    """

    MEAN = (0.485, 0.456, 0.406)
    STD = (0.229, 0.224, 0.225)

    def __init__(self, config: SegNetConfig | None = None):
        super().__init__()
        c = config or SegNetConfig()
        self.config = c
        w = c.width
        self.register_buffer("mean", torch.tensor(self.MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.STD).view(1, 3, 1, 1), persistent=False)
        # Early-downsampling stem: two stride-2 convolutions, /4.
        self.stem = nn.Sequential(conv_bn_act(3, c.stem_width, stride=2), conv_bn_act(c.stem_width, w, stride=2))
        self.down = nn.ModuleList()  # level i > 0 starts with a stride-2 block
        self.encoders = nn.ModuleList()
        for level in range(c.levels):
            if level > 0:
                self.down.append(ModifiedMBConv(w, w, c.expansion, stride=2, se=c.se))
            self.encoders.append(nn.Sequential(*[ModifiedMBConv(w, w, c.expansion, se=c.se) for _ in range(c.depth)]))
        self.fuse = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for _ in range(c.levels - 1):
            self.fuse.append(conv_bn_act(2 * w, w, k=1))
            self.decoders.append(nn.Sequential(*[ModifiedMBConv(w, w, c.expansion, se=c.se) for _ in range(c.depth)]))
        # Head at 1/4 resolution, with the stem's 1/2-resolution features for sharper edges.
        self.head = nn.Sequential(conv_bn_act(w, w, k=3), nn.Conv2d(w, c.num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        x = (x - self.mean) / self.std
        x = self.stem(x)
        skips = []
        for level, encoder in enumerate(self.encoders):
            if level > 0:
                x = self.down[level - 1](x)
            x = encoder(x)
            skips.append(x)
        x = skips.pop()
        for fuse, decoder in zip(self.fuse, self.decoders):
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = decoder(fuse(torch.cat([x, skip], 1)))
        logits = self.head(x)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
