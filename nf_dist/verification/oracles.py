"""Suspects as label-only oracles, and the matching rate of a fingerprint set against one.

An oracle maps uint8 images ``(N, 32, 32, 3)`` to top-1 labels ``(N,)``: all the owner ever gets
from a suspect. A white-box model wrapped by :func:`model_oracle`, an ONNX or TorchScript file
(:mod:`.files`) and a deployed HTTP API (:mod:`.http`) are all oracles, so verification treats
them alike. A suspect that expects another input size or normalisation declares it as a
:class:`Preprocessing`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nf_dist.errors import ConfigError
from nf_dist.fingerprint.fingerprint_set import FingerprintSet
from nf_dist.models.inference import predict
from nf_dist.scoring import matching_rate

#: A label-only suspect: uint8 images ``(N, 32, 32, 3)`` -> top-1 labels ``(N,)``.
LabelOracle = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Preprocessing:
    """How a foreign suspect wants its input: resized to ``size`` pixels (bilinear), then
    ``(x - mean) / std`` per channel, NCHW float32. The defaults feed [0, 1] pixels unchanged
    (nf-dist's own classifiers normalise inside)."""

    size: int = 32
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        if not 8 <= self.size <= 1024:
            raise ConfigError(f"preprocessing.size must be in [8, 1024] pixels, got {self.size}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError("preprocessing.mean and .std need 3 values each, std > 0")

    def __call__(self, images: np.ndarray) -> torch.Tensor:
        """``(N, H, W, 3)`` uint8 -> ``(N, 3, size, size)`` float32."""
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255
        if x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (x - mean) / std


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one suspect against a bare threshold."""

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


def module_oracle(
    module: nn.Module, preprocessing: Preprocessing, batch_size: int = 256
) -> LabelOracle:
    """A foreign torch module (TorchScript, timm, torchvision) behind its own preprocessing."""

    @torch.no_grad()
    def answer(images: np.ndarray) -> np.ndarray:
        module.eval()
        labels = [
            module(preprocessing(images[i : i + batch_size])).argmax(1).cpu().numpy()
            for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(labels) if labels else np.zeros(0, np.int64)

    return answer


def verify(
    fingerprints: FingerprintSet, suspect: str, oracle: LabelOracle, threshold: float = 0.5
) -> Verdict:
    """Query ``oracle`` with the fingerprints and compare its labels with ``y_orig``."""
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    labels = oracle(fingerprints.inputs())
    return Verdict(suspect, matching_rate(labels, fingerprints.y_orig), threshold)
