"""CIFAR SqueezeNet 1.1.

Paper: Iandola et al., "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB
model size", arXiv:1602.07360, 2016 (v1.1 layout from the authors' repository).

Adapted for 32x32 inputs: the stem is a 3x3 conv to 64 channels at stride ``stem_stride`` (ImageNet:
stride 2) and the stem max-pool is dropped, so the eight fire modules run at 32, 16 and 8 pixels.
Fire modules have BatchNorm after each conv (the original has none) so they train with the same
recipe as the other architectures. The original classifier (dropout, 1x1 conv to the classes,
global pooling) becomes dropout 0.5 after global pooling and a linear ``fc``, as the contract needs.
"""

from __future__ import annotations

import torch
from torch import nn

from nf_dist.models.classifiers.base import CLASSIFIERS, scaled
from nf_dist.models.classifiers.layers import conv_bn

STEM_CHANNELS = 64
# (squeeze, expand) channels per fire module (each expand branch has ``expand`` channels);
# "M" is a stride-2 max-pool.
FIRES: tuple[tuple[int, int] | str, ...] = (
    (16, 64),
    (16, 64),
    "M",
    (32, 128),
    (32, 128),
    "M",
    (48, 192),
    (48, 192),
    (64, 256),
    (64, 256),
)
DROPOUT = 0.5


class Fire(nn.Module):
    """1x1 squeeze, then parallel 1x1 and 3x3 expands concatenated (2 * ``expand`` channels)."""

    def __init__(self, in_channels: int, squeeze: int, expand: int) -> None:
        super().__init__()
        self.squeeze = conv_bn(in_channels, squeeze, kernel=1)
        self.expand1 = conv_bn(squeeze, expand, kernel=1)
        self.expand3 = conv_bn(squeeze, expand, kernel=3)
        self.out_channels = 2 * expand

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = self.squeeze(x)
        return torch.cat([self.expand1(squeezed), self.expand3(squeezed)], dim=1)


class SqueezeNet(nn.Module):
    """CIFAR SqueezeNet 1.1 body.

    Shape: ``(N, 3, H, W)`` normalised -> ``(N, num_classes)`` logits.
    """

    def __init__(self, num_classes: int, width: float, stem_stride: int) -> None:
        super().__init__()
        channels = scaled(STEM_CHANNELS, width)
        self.stem = conv_bn(3, channels, stride=stem_stride)
        layers: list[nn.Module] = []
        for spec in FIRES:
            if isinstance(spec, str):
                layers.append(nn.MaxPool2d(3, stride=2, padding=1))
                continue
            fire = Fire(channels, scaled(spec[0], width), scaled(spec[1], width))
            layers.append(fire)
            channels = fire.out_channels
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(DROPOUT))
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.head(self.features(self.stem(x))))


@CLASSIFIERS.register("squeezenet")
def squeezenet(num_classes: int, width: float, stem_stride: int) -> nn.Module:
    """SqueezeNet 1.1 for 32x32 inputs, with BatchNorm and a linear ``fc``."""
    return SqueezeNet(num_classes, width, stem_stride)
