"""CIFAR MobileNetV2.

Paper: Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018.

CIFAR layout (as in kuangliu/pytorch-cifar): the stem conv and the first stride-2 stage (24
channels) run at stride 1, so the network downsamples 32 -> 4 pixels instead of 224 -> 7. The
inverted-residual blocks, ReLU6, linear bottlenecks and the 1280-channel head follow the paper;
identity shortcuts only where stride is 1 and channels match, as in the paper.
"""

from __future__ import annotations

import torch
from torch import nn

from nf_dist.models.classifiers.base import CLASSIFIERS, scaled
from nf_dist.models.classifiers.layers import InvertedResidual, conv_bn

# (expansion, out_channels, num_blocks, stride) per stage; stage 2 is stride 1 for CIFAR.
STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


class MobileNetV2(nn.Module):
    """CIFAR MobileNetV2 body.

    Shape: ``(N, 3, H, W)`` normalised -> ``(N, num_classes)`` logits.
    """

    def __init__(self, num_classes: int, width: float, stem_stride: int) -> None:
        super().__init__()
        in_channels = scaled(STEM_CHANNELS, width)
        self.stem = conv_bn(3, in_channels, stride=stem_stride, act=nn.ReLU6)
        blocks: list[nn.Module] = []
        for expansion, channels, num_blocks, stride in STAGES:
            out_channels = scaled(channels, width)
            for block_index in range(num_blocks):
                block_stride = stride if block_index == 0 else 1
                blocks.append(InvertedResidual(in_channels, out_channels, expansion, block_stride))
                in_channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        head_channels = scaled(HEAD_CHANNELS, width)
        self.head = nn.Sequential(
            conv_bn(in_channels, head_channels, kernel=1, act=nn.ReLU6),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Linear(head_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.head(self.blocks(self.stem(x))))


@CLASSIFIERS.register("mobilenet_v2")
def mobilenet_v2(num_classes: int, width: float, stem_stride: int) -> nn.Module:
    """MobileNetV2 for 32x32 inputs (stride-1 stem and second stage)."""
    return MobileNetV2(num_classes, width, stem_stride)
