"""Distillation (Hinton et al., 2015) and Knockoff Nets (Orekondy et al., CVPR 2019)."""

from __future__ import annotations

from typing import ClassVar

from nf_dist.bench.attacks.base import ATTACKS, AttackData, ModelRecipe, student
from nf_dist.errors import ConfigError
from nf_dist.models import Classifier
from nf_dist.models.training import train_classifier


@ATTACKS.register("distill")
class Distill:
    """A fresh student of the recipe's architecture trained on the teacher's soft outputs (T = 1)
    over the attacker's training half, seeing the same augmented view as the teacher."""

    needs_parent: ClassVar[bool] = True
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
        if parent is None:
            raise ConfigError("distill needs a teacher; set `parent` in the catalog row")
        model = student(recipe, data.train.num_classes, seed)
        train_classifier(
            model,
            data.train,
            recipe.train,
            teacher=parent,
            device=device,
            progress=progress,
            description=f"distill-{recipe.arch}",
        )
        return model


@ATTACKS.register("knockoff")
class Knockoff:
    """Knockoff Nets, random strategy: query the victim with out-of-distribution images (here
    Tiny-ImageNet at 32x32; any Parquet dataset by config) and train a student on its soft
    outputs. The victim is never shown its own training data."""

    needs_parent: ClassVar[bool] = True
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
        if parent is None:
            raise ConfigError("knockoff needs a victim; set `parent` in the catalog row")
        if data.query is None:
            raise ConfigError(
                "knockoff needs a query dataset; set the profile's data.query_uri "
                "(e.g. ../shared/data/tinyimagenet/train.parquet)"
            )
        model = student(recipe, data.train.num_classes, seed)
        train_classifier(
            model,
            data.query,
            recipe.train,
            teacher=parent,
            device=device,
            progress=progress,
            description=f"knockoff-{recipe.arch}",
        )
        return model
