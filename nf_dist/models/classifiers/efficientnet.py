"""CIFAR adaptation of EfficientNet-B0.

Paper: Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
ICML 2019.

Adapted for 32x32 inputs in the style of kuangliu/pytorch-cifar's ``EfficientNetB0``: the stem is
a 3x3 conv at stride 1 (ImageNet: stride 2), so the seven MBConv stages see 32 -> 2 pixels. Kept
from B0: the stage table (expansion, channels, repeats, kernel, stride), squeeze-and-excitation
(ratio 0.25 of the block input), SiLU activations, the 1x1 head conv to 1280 channels and dropout
0.2 before ``fc``. Left out: stochastic depth (drop-connect) and compound scaling beyond
``width``.
"""

from __future__ import annotations

import torch
from torch import nn

from nf_dist.models.classifiers.base import CLASSIFIERS, scaled
from nf_dist.models.classifiers.layers import InvertedResidual, conv_bn

# (expansion, out_channels, num_blocks, kernel, stride) per stage, as in B0.
STAGES = (
    (1, 16, 1, 3, 1),
    (6, 24, 2, 3, 2),
    (6, 40, 2, 5, 2),
    (6, 80, 3, 3, 2),
    (6, 112, 3, 5, 1),
    (6, 192, 4, 5, 2),
    (6, 320, 1, 3, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
SE_RATIO = 0.25
DROPOUT = 0.2


class EfficientNet(nn.Module):
    """CIFAR EfficientNet-B0 body.

    Shape: ``(N, 3, H, W)`` normalised -> ``(N, num_classes)`` logits.
    """

    def __init__(self, num_classes: int, width: float, stem_stride: int) -> None:
        super().__init__()
        in_channels = scaled(STEM_CHANNELS, width)
        self.stem = conv_bn(3, in_channels, stride=stem_stride, act=nn.SiLU)
        blocks: list[nn.Module] = []
        for expansion, channels, num_blocks, kernel, stride in STAGES:
            out_channels = scaled(channels, width)
            for block_index in range(num_blocks):
                block_stride = stride if block_index == 0 else 1
                blocks.append(
                    InvertedResidual(
                        in_channels,
                        out_channels,
                        expansion,
                        block_stride,
                        kernel=kernel,
                        se_channels=max(1, int(in_channels * SE_RATIO)),
                        act=nn.SiLU,
                    )
                )
                in_channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        head_channels = scaled(HEAD_CHANNELS, width)
        self.head = nn.Sequential(
            conv_bn(in_channels, head_channels, kernel=1, act=nn.SiLU),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(DROPOUT),
        )
        self.fc = nn.Linear(head_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.head(self.blocks(self.stem(x))))


@CLASSIFIERS.register("efficientnet_b0")
def efficientnet_b0(num_classes: int, width: float, stem_stride: int) -> nn.Module:
    """EfficientNet-B0 adapted to 32x32 inputs (stride-1 stem); see the module docstring."""
    return EfficientNet(num_classes, width, stem_stride)
