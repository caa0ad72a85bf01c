"""The optimisation's schedule (which models and transformation each step uses) and its
history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import numpy as np
import torch

from nf_dist.fingerprint.ensembles import dropout_subset
from nf_dist.fingerprint.naturalfinger.config import NaturalFingerConfig
from nf_dist.fingerprint.transforms import TRANSFORM_NAMES, TransformSpec, sample_transform


@dataclass(frozen=True)
class StepPlan:
    """What one optimisation step uses: model indices, transformation, D's labels seed."""

    positives: tuple[int, ...]
    negatives: tuple[int, ...]
    transform: TransformSpec
    label_seed: int


@dataclass
class GenerationHistory:
    """Per-step loss terms and the share of images at their targets."""

    loss: list[float] = field(default_factory=list)
    positive: list[float] = field(default_factory=list)
    negative: list[float] = field(default_factory=list)
    disc: list[float] = field(default_factory=list)
    success: list[float] = field(default_factory=list)

    FIELDS: ClassVar[tuple[str, ...]] = ("loss", "positive", "negative", "disc", "success")

    def append(self, loss: float, models: ModelTerms, disc: float) -> None:
        """Record one step: the total loss, the models' terms and the discriminator term."""
        self.loss.append(loss)
        self.positive.append(models.positive)
        self.negative.append(models.negative)
        self.disc.append(disc)
        self.success.append(float(models.hits.mean()))

    def extended(self, later: GenerationHistory) -> GenerationHistory:
        """This history followed by ``later``'s steps (a resumed run's whole history)."""
        return GenerationHistory(
            *(getattr(self, name) + getattr(later, name) for name in self.FIELDS)
        )


class ModelTerms(Protocol):
    """What a step's classifiers contributed (a ``ModelStep``): mean losses and hits."""

    positive: float
    negative: float
    hits: torch.Tensor


def plan_steps(num_positive: int, num_negative: int, config: NaturalFingerConfig) -> list[StepPlan]:
    """The whole schedule: per step, model mini-batches, transformation and D-label seed.

    ``epochs`` sampling shuffles the positive and the negative models separately every epoch and
    walks through them ``positives_per_step`` + ``negatives_per_step`` at a time (the shorter
    list wraps around); ``dropout`` keeps each model with chance ``1 - model_dropout``.
    """
    rng = np.random.default_rng(config.seed + 2)
    names = TRANSFORM_NAMES if config.input_transforms else ("identity",)
    if config.model_sampling == "dropout":
        return [
            StepPlan(
                positives=dropout_subset(num_positive, config.model_dropout, rng),
                negatives=dropout_subset(num_negative, config.model_dropout, rng),
                transform=sample_transform(rng, names, config.transform_strength),
                label_seed=int(rng.integers(0, 2**31 - 1)),
            )
            for _ in range(config.steps)
        ]
    plans: list[StepPlan] = []
    while len(plans) < config.steps:
        pos_order, neg_order = rng.permutation(num_positive), rng.permutation(num_negative)
        pos_chunks = [
            pos_order[i : i + config.positives_per_step]
            for i in range(0, num_positive, config.positives_per_step)
        ]
        neg_chunks = [
            neg_order[i : i + config.negatives_per_step]
            for i in range(0, num_negative, config.negatives_per_step)
        ]
        for i in range(max(len(pos_chunks), len(neg_chunks))):
            if len(plans) == config.steps:
                break
            plans.append(
                StepPlan(
                    positives=tuple(int(j) for j in pos_chunks[i % len(pos_chunks)]),
                    negatives=tuple(int(j) for j in neg_chunks[i % len(neg_chunks)]),
                    transform=sample_transform(rng, names, config.transform_strength),
                    label_seed=int(rng.integers(0, 2**31 - 1)),
                )
            )
    return plans
