"""Evaluate several models of one architecture as one batched call (torch.func stacking + vmap).

``StackedModels(models)(x)`` equals ``torch.stack([m(x) for m in models])`` for eval-mode models
of identical structure; vmap runs them as one batched computation instead of a Python loop, which
pays off where per-model kernels are small (narrow CPU-profile nets, many models per GPU).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state

from nf_dist.errors import ConfigError


class StackedModels:
    """Models of one architecture, weights stacked on a leading model dimension."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        if not models:
            raise ConfigError("StackedModels needs at least one model")
        kinds = {type(m) for m in models} | {
            tuple(n for n, _ in m.named_parameters())
            for m in models  # type: ignore[misc]
        }
        if len(kinds) != 2:
            raise ConfigError("StackedModels needs models of one architecture and shape")
        for model in models:
            model.eval()
        self.params, self.buffers = stack_module_state(list(models))  # type: ignore[arg-type]
        self.base = copy.deepcopy(models[0]).to("meta")
        self.num_models = len(models)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` -> ``(num_models, N, num_classes)`` logits."""

        def one(params: dict, buffers: dict, inputs: torch.Tensor) -> torch.Tensor:
            return functional_call(self.base, (params, buffers), (inputs,))

        return torch.vmap(one, in_dims=(0, 0, None))(self.params, self.buffers, x)
