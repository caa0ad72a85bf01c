"""A model zoo described as data: the rows, their validation, and how one model is built.

Each row names an attack from :data:`nf_dist.bench.attacks.ATTACKS`, its parent row, the data half
and the recipe. :mod:`nf_dist.bench.build` builds a list of rows as Ray tasks (FingerBench and the
quickstart's zoo alike), each through :func:`build_model`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from nf_dist.bench.attacks import ATTACKS, AttackData, ModelRecipe
from nf_dist.bench.partial import EpochCheckpoints
from nf_dist.data.config import Splits
from nf_dist.errors import ConfigError
from nf_dist.models import Classifier
from nf_dist.models.inference import accuracy
from nf_dist.models.training import TrainConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ZooModel:
    """One model of a zoo.

    Attributes:
        id: stable identifier (file names, tables).
        role: ``positive`` (derived from the owner's source) or ``negative`` (independent).
        attack: a registered attack (``nf_dist.bench.attacks.ATTACKS``).
        parent: id of the model the attack starts from (None for ``scratch``).
        data_half: the training half the attacker holds (``a``: the owner's, ``b``: independent).
        use: ``generation`` (the owner's white-box models for fingerprinting), ``screening``
            (a model the owner holds that only screens the optimised images: never optimised for
            or against, it stands for the models the owner has not seen) or ``heldout``
            (suspects kept apart for evaluation).
        arch, width, stem_stride: the architecture (for ``scratch`` and ``distill``).
        train: training recipe.
        params: attack parameters (``mode`` for finetune, ``rate`` for prune).
        seed: initialisation and data-order seed.
        recipe: the name of the catalog recipe the training settings came from.
        mirror_of: for a mirror negative, the id of the positive it mirrors.
        num_cpus, num_gpus: what one build task of this model asks the cluster for.
    """

    id: str
    role: Literal["positive", "negative"]
    attack: str
    parent: str | None = None
    data_half: Literal["a", "b"] = "a"
    use: Literal["generation", "screening", "heldout"] = "heldout"
    arch: str = "resnet18"
    width: float = 0.25
    stem_stride: int = 2
    train: TrainConfig = field(default_factory=TrainConfig)
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    recipe: str | None = None
    mirror_of: str | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0


def validate_zoo(models: tuple[ZooModel, ...]) -> None:
    """Reject duplicate ids, unknown attacks, and parents that are missing or come later."""
    seen: set[str] = set()
    for row in models:
        if row.id in seen:
            raise ConfigError(f"zoo model id {row.id!r} appears twice")
        attack = ATTACKS.get(row.attack)
        if attack.needs_parent and row.parent is None:
            raise ConfigError(f"zoo model {row.id!r}: attack {row.attack!r} needs a parent")
        if row.parent is not None and row.parent not in seen:
            raise ConfigError(
                f"zoo model {row.id!r}: parent {row.parent!r} must be listed before it"
            )
        seen.add(row.id)


@dataclass
class BuiltModel:
    """A built (or reused) model and its facts."""

    row: ZooModel
    model: Classifier
    test_accuracy: float
    seconds: float
    reused: bool


def build_model(
    row: ZooModel,
    parent: Classifier | None,
    splits: Splits,
    *,
    progress: bool = False,
    device: str = "cpu",
    checkpoints: EpochCheckpoints | None = None,
) -> tuple[Classifier, float, float]:
    """Build one model by its attack; returns (model, test accuracy, seconds). ``checkpoints``
    resumes a stopped build of it from its last epoch; the seconds then include the earlier
    run's training."""
    started = time.perf_counter()
    if parent is not None:
        parent = parent.to(device)
    recipe = ModelRecipe(row.arch, row.width, row.stem_stride, row.train, row.params)
    attack = ATTACKS.get(row.attack)()
    torch.manual_seed(row.seed)
    data = AttackData(splits.half(row.data_half), splits.finetune, splits.query)
    model = attack(
        parent,
        data,
        recipe,
        progress=progress,
        seed=row.seed,
        device=device,
        checkpoints=checkpoints,
    )
    seconds = time.perf_counter() - started
    if checkpoints is not None:
        seconds += checkpoints.earlier_seconds
    return model, accuracy(model, splits.test, device=device), seconds
