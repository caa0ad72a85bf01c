"""CIFAR GoogLeNet (Inception v1) with BatchNorm.

Paper: Szegedy et al., "Going Deeper with Convolutions", CVPR 2015.

CIFAR layout (as in kuangliu/pytorch-cifar): the ImageNet stem (7x7 conv, pools, 3x3 convs) is a
single 3x3 conv to 192 channels, followed by the nine Inception modules 3a-5b with the paper's
channel table and two stride-2 max-pools (32 -> 16 -> 8 pixels). Every conv has BatchNorm; the
auxiliary classifiers are left out. The 5x5 branch keeps the paper's 5x5 kernel.
"""

from __future__ import annotations

import torch
from torch import nn

from nf_dist.models.classifiers.base import CLASSIFIERS, scaled
from nf_dist.models.classifiers.layers import conv_bn

STEM_CHANNELS = 192
# (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection) per module; "M" is a stride-2 pool.
MODULES: tuple[tuple[int, int, int, int, int, int] | str, ...] = (
    (64, 96, 128, 16, 32, 32),  # 3a
    (128, 128, 192, 32, 96, 64),  # 3b
    "M",
    (192, 96, 208, 16, 48, 64),  # 4a
    (160, 112, 224, 24, 64, 64),  # 4b
    (128, 128, 256, 24, 64, 64),  # 4c
    (112, 144, 288, 32, 64, 64),  # 4d
    (256, 160, 320, 32, 128, 128),  # 4e
    "M",
    (256, 160, 320, 32, 128, 128),  # 5a
    (384, 192, 384, 48, 128, 128),  # 5b
)


class Inception(nn.Module):
    """Four parallel branches concatenated on channels (spatial size unchanged)."""

    def __init__(
        self,
        in_channels: int,
        n1x1: int,
        n3x3_reduce: int,
        n3x3: int,
        n5x5_reduce: int,
        n5x5: int,
        pool_proj: int,
    ) -> None:
        super().__init__()
        self.branch1 = conv_bn(in_channels, n1x1, kernel=1)
        self.branch3 = nn.Sequential(
            conv_bn(in_channels, n3x3_reduce, kernel=1), conv_bn(n3x3_reduce, n3x3, kernel=3)
        )
        self.branch5 = nn.Sequential(
            conv_bn(in_channels, n5x5_reduce, kernel=1), conv_bn(n5x5_reduce, n5x5, kernel=5)
        )
        self.branch_pool = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1), conv_bn(in_channels, pool_proj, kernel=1)
        )
        self.out_channels = n1x1 + n3x3 + n5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch1(x), self.branch3(x), self.branch5(x), self.branch_pool(x)]
        return torch.cat(branches, dim=1)


class GoogLeNet(nn.Module):
    """CIFAR GoogLeNet body.

    Shape: ``(N, 3, H, W)`` normalised -> ``(N, num_classes)`` logits.
    """

    def __init__(self, num_classes: int, width: float, stem_stride: int) -> None:
        super().__init__()
        channels = scaled(STEM_CHANNELS, width)
        self.stem = conv_bn(3, channels, stride=stem_stride)
        layers: list[nn.Module] = []
        for spec in MODULES:
            if isinstance(spec, str):
                layers.append(nn.MaxPool2d(3, stride=2, padding=1))
                continue
            module = Inception(channels, *(scaled(c, width) for c in spec))
            layers.append(module)
            channels = module.out_channels
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.pool(self.features(self.stem(x)))  # (N, C, 1, 1)
        return self.fc(torch.flatten(features, 1))


@CLASSIFIERS.register("googlenet")
def googlenet(num_classes: int, width: float, stem_stride: int) -> nn.Module:
    """GoogLeNet (Inception v1) for 32x32 inputs with BatchNorm; see the module docstring."""
    return GoogLeNet(num_classes, width, stem_stride)
