"""CIFAR adaptation of Inception-v3.

Paper: Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", CVPR 2016.

Kept from Inception-v3 (torchvision's channel tables): three Inception-A modules (5x5 and double
3x3 branches), the grid reduction "B", four Inception-C modules with factorised 1x7/7x1 convs,
the grid reduction "D", two Inception-E modules with split 1x3/3x1 outputs, 2048 features,
dropout 0.5, ``fc``. BatchNorm after every conv.

Adapted for 32x32 inputs: the stem is three 3x3 convs (stride ``stem_stride``, 1, 1), one
stride-2 max-pool, a 1x1 conv to 80 and a 3x3 conv to 192 (ImageNet: a stride-2 conv and two
max-pools, 299 -> 35 pixels). The modules therefore run at 16 (A), 8 (C) and 4 (E) pixels. All
convs and pools use "same" padding, so each reduction exactly halves the grid (ImageNet: valid
padding). The auxiliary classifier is left out.

Every block takes ``scale``, a function applying the width multiplier to a channel count.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from nf_dist.models.classifiers.base import CLASSIFIERS, scaled
from nf_dist.models.classifiers.layers import conv_bn

DROPOUT = 0.5


def _avg_pool_branch(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 average pool (stride 1) then a 1x1 projection."""
    return nn.Sequential(
        nn.AvgPool2d(3, stride=1, padding=1), conv_bn(in_channels, out_channels, kernel=1)
    )


class InceptionA(nn.Module):
    """1x1 | 1x1->5x5 | 1x1->3x3->3x3 | avgpool->1x1, at unchanged resolution."""

    def __init__(self, in_channels: int, pool_channels: int, scale: Callable[[int], int]) -> None:
        super().__init__()
        self.branch1 = conv_bn(in_channels, scale(64), kernel=1)
        self.branch5 = nn.Sequential(
            conv_bn(in_channels, scale(48), kernel=1), conv_bn(scale(48), scale(64), kernel=5)
        )
        self.branch3 = nn.Sequential(
            conv_bn(in_channels, scale(64), kernel=1),
            conv_bn(scale(64), scale(96)),
            conv_bn(scale(96), scale(96)),
        )
        self.branch_pool = _avg_pool_branch(in_channels, pool_channels)
        self.out_channels = scale(64) + scale(64) + scale(96) + pool_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch1(x), self.branch5(x), self.branch3(x), self.branch_pool(x)]
        return torch.cat(branches, dim=1)


class ReductionB(nn.Module):
    """Grid reduction 2x: stride-2 3x3 | 1x1->3x3->3x3 (stride 2) | max-pool."""

    def __init__(self, in_channels: int, scale: Callable[[int], int]) -> None:
        super().__init__()
        self.branch3 = conv_bn(in_channels, scale(384), stride=2)
        self.branch3_double = nn.Sequential(
            conv_bn(in_channels, scale(64), kernel=1),
            conv_bn(scale(64), scale(96)),
            conv_bn(scale(96), scale(96), stride=2),
        )
        self.branch_pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.out_channels = scale(384) + scale(96) + in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch3(x), self.branch3_double(x), self.branch_pool(x)]
        return torch.cat(branches, dim=1)


class InceptionC(nn.Module):
    """7x7 convs factorised into 1x7 and 7x1 pairs; ``mid`` channels inside the 7x7 branches."""

    def __init__(self, in_channels: int, mid: int, scale: Callable[[int], int]) -> None:
        super().__init__()
        out = scale(192)
        self.branch1 = conv_bn(in_channels, out, kernel=1)
        self.branch7 = nn.Sequential(
            conv_bn(in_channels, mid, kernel=1),
            conv_bn(mid, mid, kernel=(1, 7)),
            conv_bn(mid, out, kernel=(7, 1)),
        )
        self.branch7_double = nn.Sequential(
            conv_bn(in_channels, mid, kernel=1),
            conv_bn(mid, mid, kernel=(7, 1)),
            conv_bn(mid, mid, kernel=(1, 7)),
            conv_bn(mid, mid, kernel=(7, 1)),
            conv_bn(mid, out, kernel=(1, 7)),
        )
        self.branch_pool = _avg_pool_branch(in_channels, out)
        self.out_channels = 4 * out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch1(x), self.branch7(x), self.branch7_double(x), self.branch_pool(x)]
        return torch.cat(branches, dim=1)


class ReductionD(nn.Module):
    """Grid reduction 2x: 1x1->3x3 (stride 2) | 1x1->1x7->7x1->3x3 (stride 2) | max-pool."""

    def __init__(self, in_channels: int, scale: Callable[[int], int]) -> None:
        super().__init__()
        self.branch3 = nn.Sequential(
            conv_bn(in_channels, scale(192), kernel=1), conv_bn(scale(192), scale(320), stride=2)
        )
        self.branch7 = nn.Sequential(
            conv_bn(in_channels, scale(192), kernel=1),
            conv_bn(scale(192), scale(192), kernel=(1, 7)),
            conv_bn(scale(192), scale(192), kernel=(7, 1)),
            conv_bn(scale(192), scale(192), stride=2),
        )
        self.branch_pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.out_channels = scale(320) + scale(192) + in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch3(x), self.branch7(x), self.branch_pool(x)]
        return torch.cat(branches, dim=1)


class SplitConv(nn.Module):
    """A 1x3 and a 3x1 conv on the same input, concatenated (Inception-E's wide outputs)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.horizontal = conv_bn(in_channels, out_channels, kernel=(1, 3))
        self.vertical = conv_bn(in_channels, out_channels, kernel=(3, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.horizontal(x), self.vertical(x)], dim=1)


class InceptionE(nn.Module):
    """1x1 | 1x1->(1x3, 3x1) | 1x1->3x3->(1x3, 3x1) | avgpool->1x1: 2048 channels at width 1."""

    def __init__(self, in_channels: int, scale: Callable[[int], int]) -> None:
        super().__init__()
        self.branch1 = conv_bn(in_channels, scale(320), kernel=1)
        self.branch3 = nn.Sequential(
            conv_bn(in_channels, scale(384), kernel=1), SplitConv(scale(384), scale(384))
        )
        self.branch3_double = nn.Sequential(
            conv_bn(in_channels, scale(448), kernel=1),
            conv_bn(scale(448), scale(384)),
            SplitConv(scale(384), scale(384)),
        )
        self.branch_pool = _avg_pool_branch(in_channels, scale(192))
        self.out_channels = scale(320) + 4 * scale(384) + scale(192)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch1(x), self.branch3(x), self.branch3_double(x), self.branch_pool(x)]
        return torch.cat(branches, dim=1)


class InceptionV3(nn.Module):
    """CIFAR Inception-v3 body.

    Shape: ``(N, 3, H, W)`` normalised -> ``(N, num_classes)`` logits.
    """

    def __init__(self, num_classes: int, width: float, stem_stride: int) -> None:
        super().__init__()

        def scale(channels: int) -> int:
            return scaled(channels, width)

        self.stem = nn.Sequential(
            conv_bn(3, scale(32), stride=stem_stride),
            conv_bn(scale(32), scale(32)),
            conv_bn(scale(32), scale(64)),
            nn.MaxPool2d(3, stride=2, padding=1),
            conv_bn(scale(64), scale(80), kernel=1),
            conv_bn(scale(80), scale(192)),
        )
        blocks: list[nn.Module] = []
        channels = scale(192)
        for pool_channels in (32, 64, 64):  # Mixed_5b-5d, 16x16 at stem stride 1
            block_a = InceptionA(channels, scale(pool_channels), scale)
            blocks.append(block_a)
            channels = block_a.out_channels
        reduction_b = ReductionB(channels, scale)  # Mixed_6a, -> 8x8
        blocks.append(reduction_b)
        channels = reduction_b.out_channels
        for mid in (128, 160, 160, 192):  # Mixed_6b-6e
            block_c = InceptionC(channels, scale(mid), scale)
            blocks.append(block_c)
            channels = block_c.out_channels
        reduction_d = ReductionD(channels, scale)  # Mixed_7a, -> 4x4
        blocks.append(reduction_d)
        channels = reduction_d.out_channels
        for _ in range(2):  # Mixed_7b-7c
            block_e = InceptionE(channels, scale)
            blocks.append(block_e)
            channels = block_e.out_channels
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(DROPOUT))
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.head(self.blocks(self.stem(x))))


@CLASSIFIERS.register("inception_v3")
def inception_v3(num_classes: int, width: float, stem_stride: int) -> nn.Module:
    """Inception-v3 adapted to 32x32 inputs; see the module docstring for what changed."""
    return InceptionV3(num_classes, width, stem_stride)
