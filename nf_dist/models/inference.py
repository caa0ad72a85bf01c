"""Label-only inference: top-1 labels and accuracy of a classifier on uint8 images.

What a suspect is ever asked for: every evaluation, verification and fingerprinting method goes
through :func:`predict`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from nf_dist.data.augment import to_input
from nf_dist.data.readers import ImageDataset


@torch.no_grad()
def predict(
    model: nn.Module,
    images: np.ndarray,
    *,
    batch_size: int = 500,
    tta: bool = False,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Top-1 labels of ``(N,H,W,3)`` uint8 images; ``tta`` averages logits over a flip."""
    model.to(device).eval()
    labels = []
    for start in range(0, len(images), batch_size):
        inputs = to_input(images[start : start + batch_size], device)
        logits = model(inputs)
        if tta:
            logits = logits + model(inputs.flip(3))
        labels.append(logits.argmax(1).cpu().numpy())
    return np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)


def accuracy(model: nn.Module, data: ImageDataset, **kwargs: object) -> float:
    """Top-1 accuracy of ``model`` on ``data`` (keyword arguments go to :func:`predict`)."""
    return float((predict(model, data.images, **kwargs) == data.labels).mean())  # type: ignore[arg-type]
