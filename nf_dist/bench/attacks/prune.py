"""Magnitude pruning then fine-tuning (Han et al., 2015)."""

from __future__ import annotations

from typing import ClassVar

import torch

from nf_dist.bench.attacks.base import (
    ATTACKS,
    Attack,
    AttackData,
    ModelRecipe,
    Trainer,
    copy_parent,
    param,
    prunable_weights,
)
from nf_dist.errors import ConfigError
from nf_dist.models import Classifier


@ATTACKS.register("prune")
class PruneFineTune(Attack):
    """Global magnitude pruning of conv and linear weights at rate ``params.rate``, then FTAL.

    Scope: one global threshold over every convolution and linear weight (biases and BatchNorm
    are kept). Pruned weights stay zero while fine-tuning (the mask is re-applied after every
    step).
    """

    param_names: ClassVar[tuple[str, ...]] = ("rate",)

    def run(
        self,
        parent: Classifier | None,
        data: AttackData,
        recipe: ModelRecipe,
        seed: int,
        train: Trainer,
    ) -> Classifier:
        rate = param(recipe, "rate", 0.5)
        if not 0 <= rate < 1:
            raise ConfigError(f"prune rate must be in [0, 1), got {rate}")
        model = copy_parent(parent)
        weights = prunable_weights(model)
        magnitudes = torch.cat([w.detach().abs().flatten() for w in weights])
        generator = torch.Generator().manual_seed(seed)
        sample = magnitudes[torch.randperm(len(magnitudes), generator=generator)[:1_000_000]]
        cutoff = torch.quantile(sample, rate)
        masks = [(w.detach().abs() > cutoff).to(w.dtype) for w in weights]

        def apply_masks() -> None:
            with torch.no_grad():
                for weight, mask in zip(weights, masks):
                    weight.mul_(mask)

        apply_masks()
        torch.manual_seed(seed)
        train(
            model,
            data.finetune,
            after_step=apply_masks,
            description=f"prune{rate:g}",
        )
        return model
