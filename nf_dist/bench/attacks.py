"""Model-stealing attacks and independent training, one registered class each.

Every attack has one call contract: ``attack(parent, data) -> model``, where ``parent`` is the
model being stolen (None for training from scratch) and ``data`` holds the datasets an attacker
has (``train``: its training half, ``finetune``: the fine-tuning set). Parents are never modified.

Papers: fine-tuning FTLL/FTAL/RTLL/RTAL (Adi et al., USENIX Security 2018); magnitude pruning
(Han et al., 2015); distillation (Hinton et al., 2015); see ``../shared/paper/NOTES.md``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from nf_dist.data.readers import ImageDataset
from nf_dist.errors import ConfigError
from nf_dist.models import Classifier, create_classifier
from nf_dist.models.training import TrainConfig, train_classifier
from nf_dist.registry import Registry


@dataclass(frozen=True)
class AttackData:
    """The datasets available to an attack."""

    train: ImageDataset
    finetune: ImageDataset


@dataclass(frozen=True)
class ModelRecipe:
    """How to build one model: architecture and training for students, attack parameters."""

    arch: str = "resnet18"
    width: float = 0.25
    stem_stride: int = 2
    train: TrainConfig = field(default_factory=TrainConfig)
    params: dict[str, Any] = field(default_factory=dict)


class Attack(Protocol):
    """``needs_parent``: whether the attack starts from a stolen model."""

    needs_parent: ClassVar[bool]

    def __call__(
        self,
        parent: Classifier | None,
        data: AttackData,
        recipe: ModelRecipe,
        *,
        progress: bool = False,
        seed: int = 0,
    ) -> Classifier: ...


ATTACKS: Registry[type[Attack]] = Registry("attack")


def _student(recipe: ModelRecipe, num_classes: int, seed: int) -> Classifier:
    torch.manual_seed(seed)
    model = create_classifier(recipe.arch, num_classes, recipe.width, recipe.stem_stride)
    return model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]


@ATTACKS.register("scratch")
class TrainFromScratch:
    """Independent training on the attacker's own half (a negative model)."""

    needs_parent: ClassVar[bool] = False

    def __call__(
        self,
        parent: Classifier | None,
        data: AttackData,
        recipe: ModelRecipe,
        *,
        progress: bool = False,
        seed: int = 0,
    ) -> Classifier:
        model = _student(recipe, data.train.num_classes, seed)
        train_classifier(model, data.train, recipe.train, progress=progress, description="scratch")
        return model


@ATTACKS.register("finetune")
class FineTune:
    """FTLL / FTAL / RTLL / RTAL on the fine-tuning set (Adi et al., 2018).

    ``params.mode``: ``ftll`` trains the last layer, ``ftal`` all layers; ``rtll`` and
    ``rtal`` first re-initialise the last layer.
    """

    needs_parent: ClassVar[bool] = True
    MODES: ClassVar[tuple[str, ...]] = ("ftll", "ftal", "rtll", "rtal")

    def __call__(
        self,
        parent: Classifier | None,
        data: AttackData,
        recipe: ModelRecipe,
        *,
        progress: bool = False,
        seed: int = 0,
    ) -> Classifier:
        mode = str(recipe.params.get("mode", "ftal"))
        if mode not in self.MODES:
            raise ConfigError(f"finetune mode must be one of {self.MODES}, got {mode!r}")
        model = _copy(parent)
        torch.manual_seed(seed)
        if mode.startswith("rt"):
            model.fc.reset_parameters()
        params = list(model.fc.parameters()) if mode.endswith("ll") else None
        train_classifier(
            model,
            data.finetune,
            recipe.train,
            parameters=params,
            progress=progress,
            description=mode,
        )
        return model


@ATTACKS.register("prune")
class PruneFineTune:
    """Global magnitude pruning of conv and linear weights at rate ``params.rate``, then FTAL.

    Pruned weights stay zero while fine-tuning (the mask is re-applied after every step).
    """

    needs_parent: ClassVar[bool] = True

    def __call__(
        self,
        parent: Classifier | None,
        data: AttackData,
        recipe: ModelRecipe,
        *,
        progress: bool = False,
        seed: int = 0,
    ) -> Classifier:
        rate = float(recipe.params.get("rate", 0.5))
        if not 0 <= rate < 1:
            raise ConfigError(f"prune rate must be in [0, 1), got {rate}")
        model = _copy(parent)
        weights = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        magnitudes = torch.cat([w.detach().abs().flatten() for w in weights])
        cutoff = torch.quantile(magnitudes[torch.randperm(len(magnitudes))[:1_000_000]], rate)
        masks = [(w.detach().abs() > cutoff).to(w.dtype) for w in weights]

        def apply_masks() -> None:
            with torch.no_grad():
                for weight, mask in zip(weights, masks):
                    weight.mul_(mask)

        apply_masks()
        torch.manual_seed(seed)
        train_classifier(
            model,
            data.finetune,
            recipe.train,
            after_step=apply_masks,
            progress=progress,
            description=f"prune{rate:g}",
        )
        return model


@ATTACKS.register("distill")
class Distill:
    """Knowledge distillation at T = 1 from the parent's soft outputs on the training half."""

    needs_parent: ClassVar[bool] = True

    def __call__(
        self,
        parent: Classifier | None,
        data: AttackData,
        recipe: ModelRecipe,
        *,
        progress: bool = False,
        seed: int = 0,
    ) -> Classifier:
        assert parent is not None
        model = _student(recipe, data.train.num_classes, seed)
        train_classifier(
            model,
            data.train,
            recipe.train,
            teacher=parent,
            progress=progress,
            description=f"distill-{recipe.arch}",
        )
        return model


def _copy(parent: Classifier | None) -> Classifier:
    if parent is None:
        raise ConfigError("this attack needs a parent model; set `parent` in the catalog row")
    return copy.deepcopy(parent)
