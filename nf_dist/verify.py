"""Verify suspects against a fingerprint set: label-only queries, matching rates, decisions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from nf_dist.fingerprint.fingerprint_set import FingerprintSet
from nf_dist.models.inference import predict
from nf_dist.scoring import matching_rate

#: A label-only suspect: uint8 images ``(N, 32, 32, 3)`` -> top-1 labels ``(N,)``.
LabelOracle = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one suspect."""

    suspect: str
    matching_rate: float
    threshold: float

    @property
    def stolen(self) -> bool:
        """Judged stolen when the matching rate is at least the threshold."""
        return self.matching_rate >= self.threshold


def model_oracle(model: nn.Module, device: str | torch.device = "cpu") -> LabelOracle:
    """Wrap a white-box model as the label-only API a suspect exposes."""
    return lambda images: predict(model, images, device=device)


def verify(
    fingerprints: FingerprintSet, suspect: str, oracle: LabelOracle, threshold: float = 0.5
) -> Verdict:
    """Query ``oracle`` with the fingerprints and compare its labels with ``y_orig``."""
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    labels = oracle(fingerprints.inputs())
    return Verdict(suspect, matching_rate(labels, fingerprints.y_orig), threshold)
