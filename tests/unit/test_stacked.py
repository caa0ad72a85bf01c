"""Stacked (vmap) evaluation equals the plain loop, values and input gradients."""

from __future__ import annotations

import pytest
import torch

from nf_dist.errors import ConfigError
from nf_dist.fingerprint.stacked import StackedModels
from nf_dist.models import create_classifier


def test_stacked_models_match_the_loop() -> None:
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(create_classifier("resnet18", width=0.125, stem_stride=2).eval())
    x = torch.rand(4, 3, 32, 32, requires_grad=True)
    stacked = StackedModels(models)(x)
    looped = torch.stack([m(x) for m in models])
    assert torch.allclose(stacked, looped, atol=1e-5)
    (g_stacked,) = torch.autograd.grad(stacked.sum(), x)
    (g_looped,) = torch.autograd.grad(looped.sum(), x)
    assert torch.allclose(g_stacked, g_looped, atol=1e-5)


def test_mixed_architectures_are_refused() -> None:
    with pytest.raises(ConfigError, match="one architecture"):
        StackedModels(
            [create_classifier("resnet18", width=0.125), create_classifier("vgg13_bn", width=0.125)]
        )
