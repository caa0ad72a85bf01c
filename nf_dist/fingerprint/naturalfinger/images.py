"""Batched generation and prediction helpers shared by the three stages."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn


@contextlib.contextmanager
def frozen(models: Sequence[nn.Module]) -> Iterator[None]:
    """Eval mode, no parameter gradients and channels-last weights for ``models``, restored
    afterwards (see :func:`channels_last`)."""
    states = [[p.requires_grad for p in m.parameters()] for m in models]
    modes = [m.training for m in models]
    for model in models:
        model.eval()
        channels_last(model)
        for p in model.parameters():
            p.requires_grad_(False)
    try:
        yield
    finally:
        for model, flags, mode in zip(models, states, modes):
            model.train(mode)
            model.to(memory_format=torch.contiguous_format)
            for p, flag in zip(model.parameters(), flags):
                p.requires_grad_(flag)


def channels_last(module: nn.Module) -> nn.Module:
    """The module with its convolution weights in channels-last layout, in place. oneDNN (CPU)
    and cuDNN (GPU, bf16) convolve faster in it: on 2 CPU cores the quickstart's fingerprint
    stage took 146 s instead of 297 s and kept the same fingerprints
    (``benchmarks/quickstart/results/quickstart_models.json``, ``speed_session_3``)."""
    return module.to(memory_format=torch.channels_last)


def _batched(fn, count: int, batch_size: int) -> torch.Tensor:  # type: ignore[no-untyped-def]
    return torch.cat(
        [fn(slice(i, min(i + batch_size, count))) for i in range(0, count, batch_size)]
    )


@torch.no_grad()
def generate_images(
    generator: nn.Module, z: torch.Tensor, y: torch.Tensor, batch_size: int
) -> torch.Tensor:
    """G(z, y) in chunks: ``(N, 3, 32, 32)`` in [0, 1], contiguous."""
    return _batched(lambda s: generator(z[s], y[s]), len(z), batch_size).contiguous()


@torch.no_grad()
def predictions(models: Sequence[nn.Module], images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Top-1 labels of every model: ``(num_models, N)``."""
    return torch.stack(
        [_batched(lambda s, m=m: m(images[s]).argmax(1), len(images), batch_size) for m in models]
    )


@torch.no_grad()
def label_probabilities(
    models: Sequence[nn.Module], images: torch.Tensor, labels: torch.Tensor, batch_size: int
) -> torch.Tensor:
    """Every model's softmax probability of each image's label: ``(num_models, N)``."""

    def probability(model: nn.Module, s: slice) -> torch.Tensor:
        return model(images[s]).float().softmax(1).gather(1, labels[s, None]).squeeze(1)

    return torch.stack(
        [_batched(lambda s, m=m: probability(m, s), len(images), batch_size) for m in models]
    )


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Round to 8-bit levels, as the images will be stored and seen by suspects."""
    return torch.round(images.clamp(0, 1) * 255) / 255
