"""Independent training from scratch on the attacker's own half (negative models, sources)."""

from __future__ import annotations

from typing import ClassVar

from nf_dist.bench.attacks.base import ATTACKS, Attack, AttackData, ModelRecipe, Trainer, student
from nf_dist.models import Classifier


@ATTACKS.register("scratch")
class TrainFromScratch(Attack):
    """Train the recipe's architecture on ``data.train`` with hard labels."""

    needs_parent: ClassVar[bool] = False

    def run(
        self,
        parent: Classifier | None,
        data: AttackData,
        recipe: ModelRecipe,
        seed: int,
        train: Trainer,
    ) -> Classifier:
        model = student(recipe, data.train.num_classes, seed)
        train(model, data.train, description="scratch")
        return model
