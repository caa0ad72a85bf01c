"""The fingerprinting-method contract and its registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from torch import nn

from nf_dist.data.readers import ImageDataset
from nf_dist.fingerprint.fingerprint_set import FingerprintSet
from nf_dist.models.inference import predict
from nf_dist.registry import Registry


@dataclass
class FingerprintContext:
    """What the owner has when fingerprinting.

    Attributes:
        positives: models derived from the owner's source, the source first (white-box).
        negatives: independent models (white-box).
        clean: clean owner images (e.g. the test split) for methods that start from real data.
        generator, discriminator, z_dim: the GAN, for generative methods (None otherwise).
        num_classes: label count.
        progress: show progress bars.
    """

    positives: Sequence[nn.Module]
    negatives: Sequence[nn.Module]
    clean: ImageDataset | None = None
    generator: nn.Module | None = None
    discriminator: nn.Module | None = None
    z_dim: int = 128
    num_classes: int = 10
    progress: bool = False


class FingerprintMethod(ABC):
    """A fingerprinting method: ``generate(context, config) -> FingerprintSet``.

    ``config_class`` is the method's frozen config dataclass (its YAML section).
    """

    config_class: ClassVar[type]

    @abstractmethod
    def generate(self, context: FingerprintContext, config: Any) -> FingerprintSet:
        """Build the fingerprint set."""


METHODS: Registry[type[FingerprintMethod]] = Registry("fingerprinting method")


def majority_labels(
    models: Sequence[nn.Module], images: np.ndarray, num_classes: int
) -> np.ndarray:
    """Per image, the label most of ``models`` give (ties: the smaller label); ``y_adv`` of the
    baselines, the label independent models answer."""
    votes = np.stack([predict(m, images) for m in models])
    return np.array([np.bincount(column, minlength=num_classes).argmax() for column in votes.T])
