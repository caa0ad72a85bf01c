"""Independent training from scratch on the attacker's own half (negative models, sources)."""

from __future__ import annotations

from typing import ClassVar

from nf_dist.bench.attacks.base import ATTACKS, AttackData, ModelRecipe, student
from nf_dist.models import Classifier
from nf_dist.models.training import train_classifier


@ATTACKS.register("scratch")
class TrainFromScratch:
    """Train the recipe's architecture on ``data.train`` with hard labels."""

    needs_parent: ClassVar[bool] = False
    param_names: ClassVar[tuple[str, ...]] = ()

    def __call__(
        self,
        parent: Classifier | None,
        data: AttackData,
        recipe: ModelRecipe,
        *,
        progress: bool = False,
        seed: int = 0,
        device: str = "cpu",
    ) -> Classifier:
        model = student(recipe, data.train.num_classes, seed)
        train_classifier(
            model, data.train, recipe.train, device=device, progress=progress, description="scratch"
        )
        return model
