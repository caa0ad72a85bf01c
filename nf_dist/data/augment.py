"""Batched, tensor-side augmentation and conversion of uint8 images to model input."""

from __future__ import annotations

import numpy as np
import torch


def to_input(images: np.ndarray | torch.Tensor, device: str | torch.device = "cpu") -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 -> ``(N, 3, H, W)`` float in [0, 1], channels-last in memory."""
    if isinstance(images, np.ndarray) and not images.flags.writeable:
        images = images.copy()  # read-only views from Ray's object store; torch wants writable
    batch = torch.as_tensor(images).to(device)
    batch = batch.permute(0, 3, 1, 2).float().div_(255.0)
    return batch.contiguous(memory_format=torch.channels_last)


def random_crop_flip(
    images: np.ndarray, pad: int, flip: bool, generator: np.random.Generator
) -> np.ndarray:
    """The paper's augmentation: random crop after zero padding by ``pad``, random h-flip.

    Args:
        images: ``(N, H, W, C)`` uint8.
        pad: padding in pixels on each side (the paper: 4); 0 disables cropping.
        flip: whether to flip each image horizontally with probability 0.5.
        generator: the random source (one per training run, for reproducibility).

    Returns:
        ``(N, H, W, C)`` uint8, a new array.
    """
    n, h, w, _ = images.shape
    out = images
    if pad > 0:
        padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        dy = np.asarray(generator.integers(0, 2 * pad + 1, size=n))
        dx = np.asarray(generator.integers(0, 2 * pad + 1, size=n))
        rows = dy[:, None] + np.arange(h)[None, :]  # (N, H)
        cols = dx[:, None] + np.arange(w)[None, :]  # (N, W)
        out = padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    if flip:
        flipped = generator.random(n) < 0.5
        out = out.copy() if out is images else out
        out[flipped] = out[flipped, :, ::-1]
    return out
