"""CIFAR VGG with BatchNorm.

Paper: Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015 (BatchNorm variants as in torchvision's ``vgg*_bn``).

CIFAR layout (as in kuangliu/pytorch-cifar): the usual 3x3 conv stacks, a single ``fc`` on the
512 pooled features instead of the two 4096-wide ImageNet layers. The fifth max-pool is a global
max-pool, which equals the 2x2 pool at stem stride 1 and still works when the stem halves the
input (five 2x2 pools would shrink 16x16 to nothing).
"""

from __future__ import annotations

import torch
from torch import nn

from nf_dist.models.classifiers.base import CLASSIFIERS, scaled
from nf_dist.models.classifiers.layers import conv_bn

# Output channels per stage; each stage ends in a max-pool.
STAGES: dict[str, tuple[tuple[int, ...], ...]] = {
    "vgg13_bn": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    "vgg16_bn": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "vgg19_bn": (
        (64, 64),
        (128, 128),
        (256, 256, 256, 256),
        (512, 512, 512, 512),
        (512, 512, 512, 512),
    ),
}


class VGG(nn.Module):
    """CIFAR VGG body.

    Shape: ``(N, 3, H, W)`` normalised -> ``(N, num_classes)`` logits.
    """

    def __init__(
        self,
        stages: tuple[tuple[int, ...], ...],
        num_classes: int,
        width: float,
        stem_stride: int,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for stage_index, stage in enumerate(stages):
            for conv_index, channels in enumerate(stage):
                out_channels = scaled(channels, width)
                stride = stem_stride if stage_index == 0 and conv_index == 0 else 1
                layers.append(conv_bn(in_channels, out_channels, stride=stride))
                in_channels = out_channels
            is_last = stage_index == len(stages) - 1
            layers.append(nn.AdaptiveMaxPool2d(1) if is_last else nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.features(x), 1))


@CLASSIFIERS.register("vgg13_bn")
def vgg13_bn(num_classes: int, width: float, stem_stride: int) -> nn.Module:
    """VGG-13 with BatchNorm: 10 conv layers in 5 stages."""
    return VGG(STAGES["vgg13_bn"], num_classes, width, stem_stride)


@CLASSIFIERS.register("vgg16_bn")
def vgg16_bn(num_classes: int, width: float, stem_stride: int) -> nn.Module:
    """VGG-16 with BatchNorm: 13 conv layers in 5 stages."""
    return VGG(STAGES["vgg16_bn"], num_classes, width, stem_stride)


@CLASSIFIERS.register("vgg19_bn")
def vgg19_bn(num_classes: int, width: float, stem_stride: int) -> nn.Module:
    """VGG-19 with BatchNorm: 16 conv layers in 5 stages."""
    return VGG(STAGES["vgg19_bn"], num_classes, width, stem_stride)
