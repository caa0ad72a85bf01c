"""Drawing from a trained generator: seeded samples, a class-by-row PNG grid, GAN-test accuracy.

Sampling always runs the generator in eval mode, so its conditional BatchNorm uses the running
statistics gathered during training and a sample does not depend on the rest of its batch.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torchvision.utils import save_image

from nf_dist.errors import ConfigError
from nf_dist.models.gan.networks import Generator
from nf_dist.storage.uri import write_bytes_atomic

GRID_PADDING = 2  # pixels between grid cells (torchvision's default)


@contextmanager
def evaluating(*modules: nn.Module) -> Iterator[None]:
    """Put ``modules`` in eval mode under no_grad, restoring each one's mode afterwards."""
    modes = [module.training for module in modules]
    try:
        for module in modules:
            module.eval()
        with torch.no_grad():
            yield
    finally:
        for module, mode in zip(modules, modes):
            module.train(mode)


def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def sample_latents(num_samples: int, z_dim: int, seed: int) -> torch.Tensor:
    """Standard-normal latents ``(num_samples, z_dim)`` drawn on the CPU from ``seed``.

    Drawing on the CPU makes a seed give the same latents on every device.
    """
    rng = torch.Generator().manual_seed(seed)
    return torch.randn(num_samples, z_dim, generator=rng)


def balanced_labels(num_samples: int, num_classes: int, seed: int) -> torch.Tensor:
    """``(num_samples,)`` labels with every class equally often (up to one), shuffled by seed."""
    rng = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_samples) % num_classes
    return labels[torch.randperm(num_samples, generator=rng)]


def save_sample_grid(generator: Generator, path: str, *, per_class: int = 10, seed: int = 0) -> str:
    """Write a PNG grid of samples: one row per class, ``per_class`` columns.

    The image is ``(32 + 2) * per_class + 2`` pixels wide and ``(32 + 2) * num_classes + 2``
    high (2-pixel padding between cells).

    Args:
        generator: a trained :class:`Generator` (its mode is restored afterwards).
        path: local path or URI of the PNG; parent folders are created.
        per_class: samples per class (columns).
        seed: seeds the latents, so a grid is comparable across checkpoints.

    Returns:
        ``path``.

    Example:
        >>> save_sample_grid(generator, "runs/gan/samples.png", per_class=8)
    """
    if per_class < 1:
        raise ConfigError(f"per_class must be at least 1, got {per_class}")
    y = torch.arange(generator.num_classes).repeat_interleave(per_class)
    z = sample_latents(len(y), generator.z_dim, seed)
    device = _device_of(generator)
    with evaluating(generator):
        images = generator(z.to(device), y.to(device)).cpu()  # (classes * per_class, 3, 32, 32)
    buffer = io.BytesIO()
    save_image(images, buffer, nrow=per_class, padding=GRID_PADDING, format="png")
    write_bytes_atomic(path, buffer.getvalue())
    return path


def gan_test_accuracy(
    generator: Generator,
    classifier: nn.Module,
    *,
    num_samples: int = 1000,
    seed: int = 0,
    batch_size: int = 250,
) -> float:
    """GAN-test: the share of samples G(z, y) that ``classifier`` labels as the requested y.

    Shmelkov et al. 2018 ("How good is my GAN?"). Needs no download: use a classifier trained on
    real data that is not one of the fingerprinted models. Ranks this project's own runs; it is not
    comparable to Inception-based scores. Classes are requested equally often.

    Args:
        generator: a trained :class:`Generator`.
        classifier: any module mapping ``(N, 3, 32, 32)`` in [0, 1] to ``(N, num_classes)`` logits.
        num_samples: number of generated images.
        seed: seeds labels and latents.
        batch_size: images per forward pass.

    Returns:
        Accuracy in [0, 1].
    """
    if num_samples < 1 or batch_size < 1:
        raise ConfigError(
            f"num_samples and batch_size must be at least 1, got {num_samples} and {batch_size}"
        )
    y = balanced_labels(num_samples, generator.num_classes, seed)
    z = sample_latents(num_samples, generator.z_dim, seed + 1)
    device = _device_of(generator)
    correct = 0
    with evaluating(generator, classifier):
        for start in range(0, num_samples, batch_size):
            z_batch = z[start : start + batch_size].to(device)
            y_batch = y[start : start + batch_size].to(device)
            predicted = classifier(generator(z_batch, y_batch)).argmax(dim=1)
            correct += int((predicted == y_batch).sum())
    return correct / num_samples
