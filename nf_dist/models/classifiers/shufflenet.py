"""CIFAR ShuffleNetV2 (1x).

Paper: Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design",
ECCV 2018.

CIFAR layout (as in kuangliu/pytorch-cifar): a 3x3 stem conv to 24 channels at stride
``stem_stride`` with no max-pool, then the 1x stages (116, 232, 464 channels; 4, 8, 4 units, the
first of each downsampling), a 1x1 conv to 1024, global average pooling and ``fc``.
"""

from __future__ import annotations

import torch
from torch import nn

from nf_dist.models.classifiers.base import CLASSIFIERS, scaled
from nf_dist.models.classifiers.layers import conv_bn

STEM_CHANNELS = 24
# (out_channels, num_units) per stage; the first unit of each stage halves the grid.
STAGES = ((116, 4), (232, 8), (464, 4))
HEAD_CHANNELS = 1024
GROUPS = 2


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave channel groups: (N, g*c, H, W) -> view (N, g, c, H, W) -> transpose -> flatten."""
    n, channels, height, width = x.shape
    x = x.view(n, groups, channels // groups, height, width).transpose(1, 2)
    return x.reshape(n, channels, height, width)


class ShuffleUnit(nn.Module):
    """Stride 1: split channels, transform one half. Stride 2: transform both copies of the input.

    Shape: ``(N, in_channels, H, W)`` -> ``(N, out_channels, H / stride, W / stride)``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        assert out_channels % 2 == 0, "ShuffleNetV2 units need an even channel count"
        self.stride = stride
        branch_channels = out_channels // 2
        branch_in = in_channels if stride == 2 else in_channels // 2
        self.left: nn.Module = nn.Identity()
        if stride == 2:
            self.left = nn.Sequential(
                conv_bn(in_channels, in_channels, stride=2, groups=in_channels, act=None),
                conv_bn(in_channels, branch_channels, kernel=1),
            )
        self.right = nn.Sequential(
            conv_bn(branch_in, branch_channels, kernel=1),
            conv_bn(
                branch_channels, branch_channels, stride=stride, groups=branch_channels, act=None
            ),
            conv_bn(branch_channels, branch_channels, kernel=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            left, right = x.chunk(2, dim=1)
        else:
            left, right = x, x
        out = torch.cat([self.left(left), self.right(right)], dim=1)
        return channel_shuffle(out, GROUPS)


class ShuffleNetV2(nn.Module):
    """CIFAR ShuffleNetV2 body.

    Shape: ``(N, 3, H, W)`` normalised -> ``(N, num_classes)`` logits.
    """

    def __init__(self, num_classes: int, width: float, stem_stride: int) -> None:
        super().__init__()
        in_channels = scaled(STEM_CHANNELS, width)
        self.stem = conv_bn(3, in_channels, stride=stem_stride)
        units: list[nn.Module] = []
        for channels, num_units in STAGES:
            out_channels = scaled(channels, width)
            for unit_index in range(num_units):
                units.append(ShuffleUnit(in_channels, out_channels, 2 if unit_index == 0 else 1))
                in_channels = out_channels
        self.units = nn.Sequential(*units)
        head_channels = scaled(HEAD_CHANNELS, width)
        self.head = nn.Sequential(
            conv_bn(in_channels, head_channels, kernel=1), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.fc = nn.Linear(head_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.head(self.units(self.stem(x))))


@CLASSIFIERS.register("shufflenet_v2")
def shufflenet_v2(num_classes: int, width: float, stem_stride: int) -> nn.Module:
    """ShuffleNetV2 1x for 32x32 inputs (no stem max-pool)."""
    return ShuffleNetV2(num_classes, width, stem_stride)
