"""CIFAR ResNets and SE-ResNet.

Papers: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016; Hu et al.,
"Squeeze-and-Excitation Networks", CVPR 2018.

CIFAR layout (as in kuangliu/pytorch-cifar): a 3x3 stem conv (no max-pool), four stages of
64-128-256-512 channels (times ``width``) at strides 1-2-2-2, global average pooling, ``fc``.
"""

from __future__ import annotations

import torch
from torch import nn

from nf_dist.models.classifiers.base import CLASSIFIERS, scaled
from nf_dist.models.classifiers.layers import SqueezeExcite, conv_bn

STAGE_CHANNELS = (64, 128, 256, 512)
SE_REDUCTION = 16


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """Identity, or a 1x1 projection when the shape changes."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return conv_bn(in_channels, out_channels, kernel=1, stride=stride, act=None)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (optionally SE-gated before the sum)."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int, se: bool = False) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = conv_bn(in_channels, planes, stride=stride)
        self.conv2 = conv_bn(planes, out_channels, act=None)
        hidden = max(4, out_channels // SE_REDUCTION)
        self.se: nn.Module = SqueezeExcite(out_channels, hidden) if se else nn.Identity()
        self.shortcut = _shortcut(in_channels, out_channels, stride)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.se(self.conv2(self.conv1(x)))
        return self.act(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 -> 1x1 expand (x4), with a residual connection."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int, se: bool = False) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = conv_bn(in_channels, planes, kernel=1)
        self.conv2 = conv_bn(planes, planes, stride=stride)
        self.conv3 = conv_bn(planes, out_channels, kernel=1, act=None)
        hidden = max(4, out_channels // SE_REDUCTION)
        self.se: nn.Module = SqueezeExcite(out_channels, hidden) if se else nn.Identity()
        self.shortcut = _shortcut(in_channels, out_channels, stride)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.se(self.conv3(self.conv2(self.conv1(x))))
        return self.act(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR ResNet body.

    Shape: ``(N, 3, H, W)`` normalised -> ``(N, num_classes)`` logits.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        num_blocks: tuple[int, int, int, int],
        num_classes: int,
        width: float,
        stem_stride: int,
        se: bool = False,
    ) -> None:
        super().__init__()
        in_channels = scaled(STAGE_CHANNELS[0], width)
        self.stem = conv_bn(3, in_channels, stride=stem_stride)
        stages: list[nn.Module] = []
        for index, (channels, count) in enumerate(zip(STAGE_CHANNELS, num_blocks)):
            planes = scaled(channels, width)
            blocks: list[nn.Module] = []
            for block_index in range(count):
                stride = 2 if index > 0 and block_index == 0 else 1
                blocks.append(block(in_channels, planes, stride, se))
                in_channels = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.pool(self.stages(self.stem(x)))  # (N, C, 1, 1)
        return self.fc(torch.flatten(features, 1))


@CLASSIFIERS.register("resnet18")
def resnet18(num_classes: int, width: float, stem_stride: int) -> nn.Module:
    """ResNet-18: basic blocks (2, 2, 2, 2)."""
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes, width, stem_stride)


@CLASSIFIERS.register("resnet34")
def resnet34(num_classes: int, width: float, stem_stride: int) -> nn.Module:
    """ResNet-34: basic blocks (3, 4, 6, 3)."""
    return ResNet(BasicBlock, (3, 4, 6, 3), num_classes, width, stem_stride)


@CLASSIFIERS.register("resnet50")
def resnet50(num_classes: int, width: float, stem_stride: int) -> nn.Module:
    """ResNet-50: bottleneck blocks (3, 4, 6, 3), 2048 features at width 1."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, width, stem_stride)


@CLASSIFIERS.register("seresnet18")
def seresnet18(num_classes: int, width: float, stem_stride: int) -> nn.Module:
    """SE-ResNet-18: ResNet-18 with a squeeze-and-excitation gate (reduction 16) per block."""
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes, width, stem_stride, se=True)
