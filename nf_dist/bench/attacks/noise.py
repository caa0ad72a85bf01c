"""Weight noising then fine-tuning (NaturalFinger's robustness benchmark)."""

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


def add_weight_noise(model: torch.nn.Module, level: float, seed: int) -> None:
    """Add N(0, (std(W) / level)^2) to every conv and linear weight W, in place.

    ``std(W)`` is the standard deviation of that layer's weight tensor, so a smaller level is a
    stronger attack (level 1 adds noise as large as the weights themselves).
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for weight in prunable_weights(model):
            noise = torch.randn(weight.shape, generator=generator, dtype=weight.dtype)
            weight.add_(noise.to(weight.device) * weight.std() / level)


@ATTACKS.register("noise")
class NoiseFineTune(Attack):
    """Noise the weights at ``params.level`` (see :func:`add_weight_noise`), then FTAL."""

    param_names: ClassVar[tuple[str, ...]] = ("level",)

    def run(
        self,
        parent: Classifier | None,
        data: AttackData,
        recipe: ModelRecipe,
        seed: int,
        train: Trainer,
    ) -> Classifier:
        level = param(recipe, "level", 5.0)
        if level <= 0:
            raise ConfigError(f"noise level must be positive, got {level}")
        model = copy_parent(parent)
        add_weight_noise(model, level, seed)
        torch.manual_seed(seed)
        train(
            model,
            data.finetune,
            description=f"noise{level:g}",
        )
        return model
