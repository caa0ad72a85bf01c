"""Distillation (Hinton et al., 2015) and Knockoff Nets (Orekondy et al., CVPR 2019)."""

from __future__ import annotations

from nf_dist.bench.attacks.base import ATTACKS, Attack, AttackData, ModelRecipe, Trainer, student
from nf_dist.errors import ConfigError
from nf_dist.models import Classifier


@ATTACKS.register("distill")
class Distill(Attack):
    """A fresh student of the recipe's architecture trained on the teacher's soft outputs (T = 1)
    over the attacker's training half, seeing the same augmented view as the teacher."""

    def run(
        self,
        parent: Classifier | None,
        data: AttackData,
        recipe: ModelRecipe,
        seed: int,
        train: Trainer,
    ) -> Classifier:
        model = student(recipe, data.train.num_classes, seed)
        train(
            model,
            data.train,
            teacher=parent,
            description=f"distill-{recipe.arch}",
        )
        return model


@ATTACKS.register("knockoff")
class Knockoff(Attack):
    """Knockoff Nets, random strategy: query the victim with out-of-distribution images (here
    Tiny-ImageNet at 32x32; any Parquet dataset by config) and train a student on its soft
    outputs. The victim is never shown its own training data."""

    def run(
        self,
        parent: Classifier | None,
        data: AttackData,
        recipe: ModelRecipe,
        seed: int,
        train: Trainer,
    ) -> Classifier:
        if data.query is None:
            raise ConfigError(
                "knockoff needs a query dataset; set the profile's data.query_uri "
                "(e.g. ../shared/data/tinyimagenet/train.parquet)"
            )
        model = student(recipe, data.train.num_classes, seed)
        train(
            model,
            data.query,
            teacher=parent,
            description=f"knockoff-{recipe.arch}",
        )
        return model
