"""CIFAR DenseNet-BC.

Paper: Huang et al., "Densely Connected Convolutional Networks", CVPR 2017.

Variant: DenseNet-BC-100 with growth rate k=12 (the paper's small CIFAR model, about 0.8M
parameters at width 1): a 3x3 stem conv to 2k channels, three dense blocks of 16 bottleneck
layers (BN-ReLU-1x1 conv to 4k, BN-ReLU-3x3 conv to k), transitions with compression 0.5 and
2x2 average pooling, then BN-ReLU, global average pooling and ``fc``. ``width`` scales the growth
rate (so every channel count follows it).
"""

from __future__ import annotations

import torch
from torch import nn

from nf_dist.models.classifiers.base import CLASSIFIERS, scaled

GROWTH_RATE = 12
BLOCK_LAYERS = (16, 16, 16)
COMPRESSION = 0.5
BOTTLENECK_FACTOR = 4


class DenseLayer(nn.Module):
    """Pre-activation bottleneck; the output is the input with ``growth`` channels appended."""

    def __init__(self, in_channels: int, growth: int) -> None:
        super().__init__()
        hidden = BOTTLENECK_FACTOR * growth
        self.body = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(),
            nn.Conv2d(in_channels, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(),
            nn.Conv2d(hidden, growth, 3, padding=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], dim=1)  # (N, C + growth, H, W)


def _transition(in_channels: int, out_channels: int) -> nn.Sequential:
    """BN-ReLU-1x1 conv (compression) then 2x2 average pooling (halves H and W)."""
    return nn.Sequential(
        nn.BatchNorm2d(in_channels),
        nn.ReLU(),
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
        nn.AvgPool2d(2),
    )


class DenseNet(nn.Module):
    """CIFAR DenseNet-BC body.

    Shape: ``(N, 3, H, W)`` normalised -> ``(N, num_classes)`` logits.
    """

    def __init__(
        self,
        block_layers: tuple[int, ...],
        growth: int,
        num_classes: int,
        stem_stride: int,
    ) -> None:
        super().__init__()
        channels = 2 * growth
        self.stem = nn.Conv2d(3, channels, 3, stride=stem_stride, padding=1, bias=False)
        layers: list[nn.Module] = []
        for block_index, num_layers in enumerate(block_layers):
            for _ in range(num_layers):
                layers.append(DenseLayer(channels, growth))
                channels += growth
            if block_index < len(block_layers) - 1:
                out_channels = int(channels * COMPRESSION)
                layers.append(_transition(channels, out_channels))
                channels = out_channels
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.BatchNorm2d(channels), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.head(self.features(self.stem(x))))


@CLASSIFIERS.register("densenet_bc")
def densenet_bc(num_classes: int, width: float, stem_stride: int) -> nn.Module:
    """DenseNet-BC-100, growth rate 12 (times ``width``), dense blocks (16, 16, 16)."""
    growth = scaled(GROWTH_RATE, width)
    return DenseNet(BLOCK_LAYERS, growth, num_classes, stem_stride)
