"""Fine-tuning attacks FTLL / FTAL / RTLL / RTAL (Adi et al., USENIX Security 2018)."""

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
)
from nf_dist.errors import ConfigError
from nf_dist.models import Classifier


@ATTACKS.register("finetune")
class FineTune(Attack):
    """Fine-tune the stolen model on the fine-tuning set.

    ``params.mode``: ``ftll`` trains the last layer, ``ftal`` all layers; ``rtll`` and ``rtal``
    first re-initialise the last layer.
    """

    param_names: ClassVar[tuple[str, ...]] = ("mode",)
    MODES: ClassVar[tuple[str, ...]] = ("ftll", "ftal", "rtll", "rtal")

    def run(
        self,
        parent: Classifier | None,
        data: AttackData,
        recipe: ModelRecipe,
        seed: int,
        train: Trainer,
    ) -> Classifier:
        mode = str(recipe.params.get("mode", "ftal"))
        if mode not in self.MODES:
            raise ConfigError(f"finetune mode must be one of {self.MODES}, got {mode!r}")
        model = copy_parent(parent)
        torch.manual_seed(seed)
        if mode.startswith("rt"):
            model.fc.reset_parameters()
        params = list(model.fc.parameters()) if mode.endswith("ll") else None
        train(
            model,
            data.finetune,
            parameters=params,
            description=mode,
        )
        return model
