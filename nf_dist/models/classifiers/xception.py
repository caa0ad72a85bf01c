"""CIFAR adaptation of Xception.

Paper: Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions", CVPR 2017.

Kept from Xception: the entry flow (two 3x3 convs, then residual blocks to 128, 256 and 728
channels), middle-flow blocks of three ReLU-separable conv-BN layers with identity shortcuts, the
exit flow (a residual block to 1024, separable convs to 1536 and 2048), global average pooling
and ``fc``.

Adapted for 32x32 inputs: the first conv has stride ``stem_stride`` (ImageNet: 2) and the first
entry block keeps the resolution (ImageNet: stride 2), so the grid goes 32 -> 16 -> 8 in the entry
flow and 8 -> 4 in the exit flow. The middle flow repeats its block 4 times instead of 8
(about 14M instead of 21M parameters at width 1, and about 40% less compute).
"""

from __future__ import annotations

import torch
from torch import nn

from nf_dist.models.classifiers.base import CLASSIFIERS, scaled
from nf_dist.models.classifiers.layers import conv_bn

MIDDLE_REPEATS = 4
# (out_channels, stride) of the three entry-flow blocks.
ENTRY_BLOCKS = ((128, 1), (256, 2), (728, 2))
MIDDLE_CHANNELS = 728
EXIT_CHANNELS = (1024, 1536, 2048)


class SeparableConv(nn.Module):
    """Depthwise 3x3 then pointwise 1x1 (no nonlinearity in between, as in the paper)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False
        )
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class XceptionBlock(nn.Module):
    """``num_convs`` x (ReLU -> separable conv -> BN), an optional stride-2 max-pool, plus a skip.

    The skip is the identity when the shape is unchanged, else a strided 1x1 conv + BN.
    ``grow_first`` puts the channel change on the first conv (entry flow) or the last (exit flow).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_convs: int,
        stride: int,
        start_with_relu: bool = True,
        grow_first: bool = True,
    ) -> None:
        super().__init__()
        widths = [in_channels]
        if grow_first:
            widths += [out_channels] * num_convs
        else:
            widths += [in_channels] * (num_convs - 1) + [out_channels]
        layers: list[nn.Module] = []
        for index in range(num_convs):
            if index > 0 or start_with_relu:
                layers.append(nn.ReLU())
            layers += [
                SeparableConv(widths[index], widths[index + 1]),
                nn.BatchNorm2d(widths[index + 1]),
            ]
        if stride != 1:
            layers.append(nn.MaxPool2d(3, stride=stride, padding=1))
        self.body = nn.Sequential(*layers)
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.skip = conv_bn(in_channels, out_channels, kernel=1, stride=stride, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.skip(x)


class Xception(nn.Module):
    """CIFAR Xception body.

    Shape: ``(N, 3, H, W)`` normalised -> ``(N, num_classes)`` logits.
    """

    def __init__(self, num_classes: int, width: float, stem_stride: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            conv_bn(3, scaled(32, width), stride=stem_stride),
            conv_bn(scaled(32, width), scaled(64, width)),
        )
        channels = scaled(64, width)
        blocks: list[nn.Module] = []
        for index, (out_channels, stride) in enumerate(ENTRY_BLOCKS):
            out = scaled(out_channels, width)
            blocks.append(XceptionBlock(channels, out, 2, stride, start_with_relu=index > 0))
            channels = out
        middle = scaled(MIDDLE_CHANNELS, width)
        blocks += [XceptionBlock(middle, middle, 3, 1) for _ in range(MIDDLE_REPEATS)]
        exit_block, exit_conv1, exit_conv2 = (scaled(c, width) for c in EXIT_CHANNELS)
        blocks.append(XceptionBlock(channels, exit_block, 2, 2, grow_first=False))
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            SeparableConv(exit_block, exit_conv1),
            nn.BatchNorm2d(exit_conv1),
            nn.ReLU(),
            SeparableConv(exit_conv1, exit_conv2),
            nn.BatchNorm2d(exit_conv2),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Linear(exit_conv2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.head(self.blocks(self.stem(x))))


@CLASSIFIERS.register("xception")
def xception(num_classes: int, width: float, stem_stride: int) -> nn.Module:
    """Xception adapted to 32x32 inputs, middle flow repeated 4 times; see the module docstring."""
    return Xception(num_classes, width, stem_stride)
