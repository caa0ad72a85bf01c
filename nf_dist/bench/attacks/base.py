"""The attack contract, its registry and the helpers every attack shares.

Every attack has one call contract: ``attack(parent, data, recipe) -> model``, where ``parent`` is
the model being stolen (None for training from scratch) and ``data`` holds the datasets an attacker
has (``train``: its training half, ``finetune``: the fine-tuning set, ``query``: out-of-distribution
images for Knockoff). Parents are never modified.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from nf_dist.bench.partial import EpochCheckpoints
from nf_dist.data.readers import ImageDataset
from nf_dist.errors import ConfigError
from nf_dist.models import Classifier, create_classifier
from nf_dist.models.training import Supervision, TrainConfig, train_classifier
from nf_dist.registry import Registry


@dataclass(frozen=True)
class AttackData:
    """The datasets available to an attack (``query`` only where Knockoff needs it)."""

    train: ImageDataset
    finetune: ImageDataset
    query: ImageDataset | None = None


@dataclass(frozen=True)
class ModelRecipe:
    """How to build one model: architecture and training for students, attack parameters."""

    arch: str = "resnet18"
    width: float = 0.25
    stem_stride: int = 2
    train: TrainConfig = field(default_factory=TrainConfig)
    params: dict[str, Any] = field(default_factory=dict)


class Trainer(Protocol):
    """``train(model, dataset, description=..., **supervision)``: the recipe's training loop on
    the attack's device; ``supervision`` holds the fields of
    :class:`~nf_dist.models.training.Supervision` (teacher, parameters, after_step, perturb)."""

    def __call__(
        self, model: nn.Module, dataset: ImageDataset, *, description: str, **supervision: Any
    ) -> None: ...


class Attack(ABC):
    """One attack: ``attack(parent, data, recipe, seed=...) -> model``.

    Subclasses set ``needs_parent`` (whether the attack starts from a stolen model) and
    ``param_names`` (the parameters a catalog row may set), and implement :meth:`run`.
    """

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
        checkpoints: EpochCheckpoints | None = None,
    ) -> Classifier:
        """Build the model; ``checkpoints`` resumes its training from, and saves, epoch
        boundaries (:mod:`nf_dist.bench.partial`)."""
        if self.needs_parent and parent is None:
            raise ConfigError(
                f"attack {type(self).__name__} needs a parent model; set `parent` in the row"
            )

        def train(
            model: nn.Module, dataset: ImageDataset, *, description: str, **supervision: Any
        ) -> None:
            train_classifier(
                model,
                dataset,
                recipe.train,
                Supervision(**supervision),
                checkpoints.attach(model) if checkpoints is not None else None,
                device=device,
                progress=progress,
                description=description,
            )

        return self.run(parent, data, recipe, seed, train)

    @abstractmethod
    def run(
        self,
        parent: Classifier | None,
        data: AttackData,
        recipe: ModelRecipe,
        seed: int,
        train: Trainer,
    ) -> Classifier:
        """Build the model (``parent`` is never modified)."""


ATTACKS: Registry[type[Attack]] = Registry("attack")


def student(recipe: ModelRecipe, num_classes: int, seed: int) -> Classifier:
    """A freshly initialised classifier of the recipe's architecture (channels-last)."""
    torch.manual_seed(seed)
    model = create_classifier(recipe.arch, num_classes, recipe.width, recipe.stem_stride)
    return model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]


def copy_parent(parent: Classifier | None) -> Classifier:
    """A deep copy of the stolen model, so the parent stays untouched."""
    if parent is None:
        raise ConfigError("this attack needs a parent model; set `parent` in the catalog row")
    return copy.deepcopy(parent)


def prunable_weights(model: nn.Module) -> list[torch.Tensor]:
    """The weights of every convolution and linear layer (the scope of pruning and noising)."""
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def param(recipe: ModelRecipe, name: str, default: float) -> float:
    """A numeric attack parameter, with a clear error when it is not a number."""
    value = recipe.params.get(name, default)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"attack parameter {name!r} must be a number, got {value!r}") from None
