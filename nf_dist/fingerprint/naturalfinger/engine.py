"""The gradient engine contract and its single-process reference.

An engine evaluates one step's positive and negative models on T(G(z)), and the discriminator on
G(z) when the step asks for it, and returns the gradient of their losses with respect to the
latents; the optimisation loop (:mod:`.optimise`) only steps. Both terms go through one pass of
the generator, which costs more than the step's eight classifiers: computing G(z) once for both
took the quickstart's fingerprint stage from 452-489 s to 297 s
(``benchmarks/quickstart/results/quickstart_models.json``, ``speed_session_3``).
:class:`LocalModelGradients` holds every model in this process; the sharded Ray engine
(``nf_dist.distributed.sharded``) splits the same sums across actors and must agree with it.
Both are context managers: leaving the block releases what the engine holds (Ray actors, their
CPUs and GPUs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

import torch
from torch import nn

from nf_dist.errors import FingerprintError
from nf_dist.fingerprint.losses import cw_away_loss, cw_loss, discriminator_loss
from nf_dist.fingerprint.naturalfinger.config import NaturalFingerConfig
from nf_dist.fingerprint.naturalfinger.prepare import Targets
from nf_dist.fingerprint.naturalfinger.schedule import StepPlan
from nf_dist.fingerprint.transforms import TransformSpec, apply_transform
from nf_dist.hardware import Precision, bf16_autocast


@dataclass
class GroupLoss:
    """The CW losses of a group of models on one batch.

    Attributes:
        total: sum over the models of their mean CW loss (differentiable); callers divide by the
            step's model count, so shards can add their partial sums.
        losses: ``(num_models,)`` each model's mean CW loss (detached).
        hits: ``(num_models,)`` each model's share of images already at their target.
    """

    total: torch.Tensor
    losses: torch.Tensor
    hits: torch.Tensor


@dataclass(frozen=True)
class Objective:
    """What the step's classifiers are pushed toward; every engine computes the same loss.

    Attributes:
        k: CW confidence.
        negatives_away: push negatives off y_orig (``negative_objective: away``) instead of onto
            y_adv (the paper's).
        precision: the config's precision (``auto``, ``fp32``, ``bf16``), resolved where the
            forward passes run (a shard's GPU and the driver's CPU may resolve ``auto`` apart).
        lambda_d: weight of the discriminator term (0: the term is not computed).
        discriminator_loss: how D's score enters the loss (:data:`DISCRIMINATOR_LOSSES`).
    """

    k: float = 50.0
    negatives_away: bool = False
    precision: Precision = "fp32"
    lambda_d: float = 0.0
    discriminator_loss: str = "generator_hinge"

    @classmethod
    def of(cls, config: NaturalFingerConfig) -> Objective:
        """The objective a config asks for."""
        return cls(
            config.k,
            config.negative_objective == "away",
            config.precision,
            config.lambda_d if config.discriminator else 0.0,
            config.discriminator_loss,
        )

    def autocast(self, device: torch.device) -> torch.autocast:
        """The autocast context of the step's forward passes (a no-op in fp32)."""
        return bf16_autocast(self.precision, device)


def model_group_loss(
    models: Sequence[nn.Module],
    images: torch.Tensor,
    target: torch.Tensor,
    k: float,
    *,
    away: bool = False,
) -> GroupLoss:
    """CW losses of ``models`` on ``images`` towards ``target`` (or, with ``away``, off it),
    with per-model diagnostics (``hits``: share at the target, or off it)."""
    # fp32 even when the images are bf16 (autocast): a shard given none of this group's models in
    # a step returns these empties, and numpy has no bf16
    total = torch.zeros((), device=images.device)
    losses, hits = [], []
    for model in models:
        logits = model(images).float()
        per_image = cw_away_loss(logits, target, k) if away else cw_loss(logits, target, k)
        loss = per_image.mean()
        total = total + loss
        losses.append(loss.detach())
        at_target = logits.argmax(1) == target
        hits.append((~at_target if away else at_target).float().mean().detach())
    empty = torch.zeros(0, device=images.device)
    return GroupLoss(
        total,
        torch.stack(losses) if losses else empty,
        torch.stack(hits) if hits else empty,
    )


@dataclass
class ModelStep:
    """What the classifiers contribute to one step.

    Attributes:
        grad: d(positive + negative + lambda_d * discriminator loss) / dz, ``(N, z_dim)``.
        positive: mean CW loss over the step's positive models.
        negative: mean CW loss over the step's negative models.
        hits: per model of the step (positives first), the share of images at their target.
        losses: per model of the step (positives first), its mean CW loss.
        discriminator: the mean discriminator term (unweighted; 0 when not asked for).
    """

    grad: torch.Tensor
    positive: float
    negative: float
    hits: torch.Tensor
    losses: torch.Tensor
    discriminator: float = 0.0


@dataclass(frozen=True)
class Critic:
    """The discriminator term of a step: D and the class labels it is given."""

    discriminator: nn.Module
    labels: torch.Tensor  # (N,)


class ModelGradients(Protocol):
    """An engine: ``engine(z, targets, plan, objective, critic_labels) -> ModelStep`` over the
    positive and negative models it holds (``num_positive``, ``num_negative``) and, when
    ``critic_labels`` (D's class labels, ``(N,)``) are given, the discriminator term; and a
    context manager that releases its resources on exit."""

    num_positive: int
    num_negative: int

    def __call__(
        self,
        z: torch.Tensor,
        targets: Targets,
        plan: StepPlan,
        objective: Objective,
        critic_labels: torch.Tensor | None = None,
    ) -> ModelStep: ...

    def __enter__(self) -> ModelGradients: ...

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None: ...


@dataclass(frozen=True)
class StepModels:
    """The models of one step (or of one shard's part of it) and the step's group sizes, which
    divide the group sums so that parts add up to the whole step's means."""

    positives: Sequence[nn.Module]
    negatives: Sequence[nn.Module]
    num_positive: int
    num_negative: int


def partial_model_gradient(
    generator: nn.Module,
    z: torch.Tensor,
    targets: Targets,
    transform: TransformSpec,
    models: StepModels,
    objective: Objective,
    critic: Critic | None = None,
) -> tuple[torch.Tensor, GroupLoss, GroupLoss, torch.Tensor]:
    """d/dz of ``sum_positives CW / num_positive + sum_negatives CW / num_negative`` on
    T(G(z)), plus ``lambda_d`` times the mean discriminator term on G(z) when a ``critic`` is
    given, with the groups' losses and the (unweighted, detached) discriminator term. The
    reference passes all of a step's models; each shard of the Ray engine passes its own (and
    one shard the critic), and the shards' gradients add up to the reference's."""
    z = z.detach().requires_grad_(True)
    with objective.autocast(z.device):
        images = generator(z, targets.y_gen)  # (N, 3, 32, 32)
        transformed = apply_transform(images, transform)
        pos = model_group_loss(models.positives, transformed, targets.y_orig, objective.k)
        if objective.negatives_away:
            neg = model_group_loss(
                models.negatives, transformed, targets.y_orig, objective.k, away=True
            )
        else:
            neg = model_group_loss(models.negatives, transformed, targets.y_adv, objective.k)
        disc = z.new_zeros(())
        if critic is not None:
            scores = critic.discriminator(images, critic.labels).float()  # (N,)
            disc = discriminator_loss(scores, objective.discriminator_loss).mean()
    # Each group's sum is divided by the step's count of that group (not the shard's), so the
    # shards' partial gradients add up to the reference's means.
    loss = pos.total / models.num_positive + neg.total / models.num_negative
    loss = loss + objective.lambda_d * disc  # disc is 0 unless this call holds the critic
    (grad,) = torch.autograd.grad(loss, z)  # (N, z_dim)
    return grad, pos, neg, disc.detach()


class LocalModelGradients:
    """All models in this process: the reference engine. ``discriminator`` is needed only by
    steps that ask for the discriminator term."""

    def __init__(
        self,
        generator: nn.Module,
        positives: Sequence[nn.Module],
        negatives: Sequence[nn.Module],
        discriminator: nn.Module | None = None,
    ) -> None:
        self.generator, self.positives, self.negatives = generator, positives, negatives
        self.discriminator = discriminator
        self.num_positive, self.num_negative = len(positives), len(negatives)

    def __enter__(self) -> LocalModelGradients:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def __call__(
        self,
        z: torch.Tensor,
        targets: Targets,
        plan: StepPlan,
        objective: Objective,
        critic_labels: torch.Tensor | None = None,
    ) -> ModelStep:
        critic = None
        if critic_labels is not None:
            if self.discriminator is None:
                raise FingerprintError(
                    "the step asks for the discriminator term but the engine holds no "
                    "discriminator; pass one, or set fingerprint.discriminator=false"
                )
            critic = Critic(self.discriminator, critic_labels)
        models = StepModels(
            [self.positives[i] for i in plan.positives],
            [self.negatives[i] for i in plan.negatives],
            len(plan.positives),
            len(plan.negatives),
        )
        grad, pos, neg, disc = partial_model_gradient(
            self.generator, z, targets, plan.transform, models, objective, critic
        )
        return ModelStep(
            grad,
            (pos.total / len(plan.positives)).item(),
            (neg.total / len(plan.negatives)).item(),
            torch.cat([pos.hits, neg.hits]),
            torch.cat([pos.losses, neg.losses]),
            disc.item(),
        )
