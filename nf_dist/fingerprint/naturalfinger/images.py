"""Batched generation and prediction helpers shared by the three stages."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn


@contextlib.contextmanager
def frozen(models: Sequence[nn.Module]) -> Iterator[None]:
    """Eval mode and no parameter gradients for ``models``, restored afterwards."""
    states = [[p.requires_grad for p in m.parameters()] for m in models]
    modes = [m.training for m in models]
    for model in models:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
    try:
        yield
    finally:
        for model, flags, mode in zip(models, states, modes):
            model.train(mode)
            for p, flag in zip(model.parameters(), flags):
                p.requires_grad_(flag)


def _batched(fn, count: int, batch_size: int) -> torch.Tensor:  # type: ignore[no-untyped-def]
    return torch.cat(
        [fn(slice(i, min(i + batch_size, count))) for i in range(0, count, batch_size)]
    )


@torch.no_grad()
def generate_images(
    generator: nn.Module, z: torch.Tensor, y: torch.Tensor, batch_size: int
) -> torch.Tensor:
    """G(z, y) in chunks: ``(N, 3, 32, 32)`` in [0, 1]."""
    return _batched(lambda s: generator(z[s], y[s]), len(z), batch_size)


@torch.no_grad()
def predictions(models: Sequence[nn.Module], images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Top-1 labels of every model: ``(num_models, N)``."""
    return torch.stack(
        [_batched(lambda s, m=m: m(images[s]).argmax(1), len(images), batch_size) for m in models]
    )


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Round to 8-bit levels, as the images will be stored and seen by suspects."""
    return torch.round(images.clamp(0, 1) * 255) / 255
