"""Building blocks shared by the CIFAR classifiers: conv + BatchNorm (+ activation)."""

from __future__ import annotations

import torch
from torch import nn

Kernel = int | tuple[int, int]


def _same_padding(kernel: Kernel) -> int | tuple[int, int]:
    """Padding that keeps the spatial size at stride 1 (odd kernels only)."""
    if isinstance(kernel, int):
        return kernel // 2
    return kernel[0] // 2, kernel[1] // 2


def conv_bn(
    in_channels: int,
    out_channels: int,
    kernel: Kernel = 3,
    stride: int = 1,
    groups: int = 1,
    act: type[nn.Module] | None = nn.ReLU,
) -> nn.Sequential:
    """Conv (no bias, "same" padding) -> BatchNorm -> optional activation.

    Shape: ``(N, in_channels, H, W)`` -> ``(N, out_channels, ceil(H / stride), ceil(W / stride))``.
    """
    layers: list[nn.Module] = [
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel,
            stride=stride,
            padding=_same_padding(kernel),
            groups=groups,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """Squeeze-and-Excitation channel gate (Hu et al., CVPR 2018).

    Shape: ``(N, C, H, W)`` -> ``(N, C, H, W)``, each channel scaled by a gate in (0, 1).
    """

    def __init__(self, channels: int, hidden: int, act: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.act = act()
        self.expand = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.expand(self.act(self.reduce(self.pool(x))))  # (N, C, 1, 1)
        return x * torch.sigmoid(gate)


class InvertedResidual(nn.Module):
    """MobileNetV2 / MBConv block: 1x1 expand -> depthwise kxk -> optional SE -> 1x1 linear
    projection, with an identity shortcut when stride is 1 and channels match.

    Args:
        se_channels: squeeze-and-excitation bottleneck width (None: no SE, as in MobileNetV2).
        act: activation class (ReLU6 for MobileNetV2, SiLU for EfficientNet).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        expansion: int,
        stride: int,
        *,
        kernel: int = 3,
        se_channels: int | None = None,
        act: type[nn.Module] = nn.ReLU6,
    ) -> None:
        super().__init__()
        hidden = in_channels * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(conv_bn(in_channels, hidden, kernel=1, act=act))
        layers.append(conv_bn(hidden, hidden, kernel=kernel, stride=stride, groups=hidden, act=act))
        if se_channels is not None:
            layers.append(SqueezeExcite(hidden, se_channels, act=act))
        layers.append(conv_bn(hidden, out_channels, kernel=1, act=None))
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out + x if self.residual else out
