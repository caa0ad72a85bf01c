"""Shared pieces of every classifier: input normalisation, width scaling, the wrapper.

Contract (every registered classifier):
    input  (N, 3, 32, 32) float in [0, 1]
    output (N, num_classes) logits
Normalisation happens inside the model, so attacks and fingerprints work in pixel space.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from nf_dist.registry import Registry

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

#: Builders take ``(num_classes, width, stem_stride)`` and return a body whose last layer is a
#: ``nn.Linear`` attribute called ``fc`` (the layer the fine-tuning attacks retrain).
ClassifierBuilder = Callable[[int, float, int], nn.Module]
CLASSIFIERS: Registry[ClassifierBuilder] = Registry("classifier")


def scaled(channels: int, width: float, minimum: int = 4, divisor: int = 2) -> int:
    """Scale a channel count by ``width``, rounded to ``divisor`` and at least ``minimum``."""
    value = int(round(channels * width / divisor)) * divisor
    return max(minimum, value)


class Normalize(nn.Module):
    """Per-channel (x - mean) / std with the statistics stored as buffers."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """A classifier body behind a normalisation layer.

    Shape and range: ``(N, 3, H, W)`` in [0, 1] -> ``(N, num_classes)`` logits.
    """

    def __init__(
        self,
        body: nn.Module,
        name: str,
        num_classes: int,
        width: float,
        stem_stride: int,
        mean: tuple[float, ...] = CIFAR10_MEAN,
        std: tuple[float, ...] = CIFAR10_STD,
    ) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.body = body
        self.arch = name
        self.num_classes = num_classes
        self.width = width
        self.stem_stride = stem_stride

    @property
    def fc(self) -> nn.Linear:
        """The final linear layer (what FTLL/RTLL retrain)."""
        layer = self.body.fc
        assert isinstance(layer, nn.Linear), f"{self.arch} body.fc must be nn.Linear"
        return layer

    def spec(self) -> dict[str, object]:
        """What :func:`nf_dist.models.create_classifier` needs to rebuild this model."""
        return {
            "arch": self.arch,
            "num_classes": self.num_classes,
            "width": self.width,
            "stem_stride": self.stem_stride,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.normalize(x))
