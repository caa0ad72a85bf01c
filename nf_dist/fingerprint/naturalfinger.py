"""NaturalFinger (Yang et al., IJCAI 2023), the single-process reference.

Paper: "NaturalFinger: Generating Natural Fingerprint with Generative Adversarial Networks".
Algorithm 1, step by step (details and defaults in ``../shared/paper/NOTES.md``):

1. draw latents z and generator classes, keep those every positive model labels alike
   (``select_initial``); that shared label is ``y_orig``;
2. adversarial labels ``y_adv``: one untargeted FGSM step, majority vote of the negative models
   (the paper; the authors' code used the positive ones, ``adversarial_label_models``);
3. optimise z only, with SGD (momentum, Nesterov) on
   mean_pos CW(pos(T(G(z))), y_orig) + mean_neg CW(neg(T(G(z))), y_adv) + lambda * L_D(D(G(z))),
   mini-batched over models (4 + 4 per step), one random transformation T per step;
4. screen: keep images that, under each of the five transformations, every positive model labels
   ``y_orig`` and every negative model labels ``y_adv``.

This module is plain torch; the sharded Ray engine reuses :func:`plan_steps` and
:func:`model_group_loss` and must reproduce these numbers.

Example:
    >>> fingerprints = generate(generator, discriminator, positives, negatives,
    ...                         NaturalFingerConfig(steps=200))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import ClassVar, Literal, Protocol

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from nf_dist.errors import ConfigError, FingerprintError
from nf_dist.fingerprint.fingerprint_set import FingerprintSet, to_uint8
from nf_dist.fingerprint.losses import (
    DISCRIMINATOR_LOSSES,
    cw_away_loss,
    cw_loss,
    discriminator_loss,
)
from nf_dist.fingerprint.transforms import (
    TRANSFORM_NAMES,
    TransformSpec,
    apply_transform,
    sample_params,
    sample_transform,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NaturalFingerConfig:
    """Settings of one NaturalFinger generation (defaults: the paper's, NOTES.md).

    Attributes:
        num_fingerprints: fingerprints kept after screening (paper: 100).
        num_candidates: latents drawn for initial-sample selection (authors: ~10 per fingerprint).
        num_optimised: initial samples that enter optimisation (more survive screening).
        steps: optimisation steps; each step sees one mini-batch of models.
        lr, momentum, nesterov: SGD on the latents (paper lr 0.5; Nesterov from the code).
        lambda_d: weight of the discriminator term (paper 0.5).
        k: CW confidence (paper 50).
        positives_per_step, negatives_per_step: the model mini-batch (paper 4 + 4).
        fgsm_epsilon: FGSM step for adversarial labels (8/255).
        adversarial_label_models: whose FGSM votes make y_adv (paper: negative; code: positive).
        discriminator_loss: see :data:`DISCRIMINATOR_LOSSES` (default: the generator-side hinge).
        discriminator_label: class given to D: ``generator`` (G's own) or ``random`` (the code's).
        adversarial_labels: trick 1; off draws a random label different from y_orig.
        input_transforms: trick 2; off applies the identity only.
        transform_strength: scales the optimisation's transformations (noise sd, largest shift
            and shear; 1 is the paper's). Screening always uses the paper's.
        discriminator: trick 3; off drops the discriminator term.
        reduction: how the per-image losses combine (paper and code: ``mean``). The CW and D
            terms are means over the N latents and each image depends only on its own latent, so
            under ``mean`` a latent moves lr/N per step: the same lr means a smaller step for a
            larger set. ``sum`` makes ``lr`` the per-latent step, whatever N is.
        latent_max_norm: after every step, latents longer than this multiple of sqrt(z_dim) (the
            prior's typical norm) are scaled back onto that sphere, keeping G where it was
            trained (paper: no bound, None).
        candidate_classes: generator classes of the candidates and the initial selection;
            ``balanced`` draws classes round-robin and picks the initial samples evenly over
            y_orig so fingerprints cover many decision boundaries (paper: ``random``).
        negative_objective: ``adversarial`` pushes negatives onto y_adv (the paper);
            ``away`` pushes them off y_orig (CW margin of y_orig over the best other class),
            which is what verification tests.
        screen_negatives: ``adversarial`` keeps an image when every negative answers y_adv (the
            paper); ``not_original`` when no negative answers y_orig.
        screen_transforms: the transformations screening applies (paper: all five).
        screen_draws: fresh parameter draws per transformation (paper: one per run; a single
            draw's luck moves survival several-fold).
        screen_min_pass: share of the transformed views an image must pass; the plain image
            (what a suspect is queried with) must always pass (paper: 1.0, every view).
        precision: ``bf16`` runs the optimisation's forward passes (G, the classifiers, D) under
            bf16 autocast, 1.5-2x faster on CPUs with AVX512-BF16 and on GPUs; the latents, their
            gradients and every label decision (selection, y_adv, screening) stay fp32.
        batch_size: images per forward pass in selection, labelling and screening.
        seed: seeds latents, labels, the model schedule and the transformations.
    """

    num_fingerprints: int = 100
    num_candidates: int = 1000
    num_optimised: int = 300
    steps: int = 1000
    lr: float = 0.5
    momentum: float = 0.9
    nesterov: bool = True
    lambda_d: float = 0.5
    k: float = 50.0
    positives_per_step: int = 4
    negatives_per_step: int = 4
    fgsm_epsilon: float = 8 / 255
    adversarial_label_models: Literal["negative", "positive"] = "negative"
    discriminator_loss: str = "generator_hinge"
    discriminator_label: Literal["generator", "random"] = "generator"
    adversarial_labels: bool = True
    input_transforms: bool = True
    transform_strength: float = 1.0
    discriminator: bool = True
    reduction: Literal["sum", "mean"] = "mean"
    latent_max_norm: float | None = None
    candidate_classes: Literal["balanced", "random"] = "random"
    negative_objective: Literal["adversarial", "away"] = "adversarial"
    screen_negatives: Literal["adversarial", "not_original"] = "adversarial"
    screen_transforms: tuple[str, ...] = TRANSFORM_NAMES
    screen_draws: int = 1
    screen_min_pass: float = 1.0
    precision: Literal["fp32", "bf16"] = "fp32"
    batch_size: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        positive = (
            "num_fingerprints",
            "num_candidates",
            "num_optimised",
            "positives_per_step",
            "negatives_per_step",
            "batch_size",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"fingerprint.{name} must be at least 1, got {getattr(self, name)}"
                )
        if self.steps < 0 or self.lr <= 0 or self.k <= 0 or self.lambda_d < 0:
            raise ConfigError(
                "fingerprint: steps >= 0, lr > 0, k > 0 and lambda_d >= 0 are required"
            )
        if self.transform_strength < 0:
            raise ConfigError("fingerprint.transform_strength must be >= 0 (1 is the paper's)")
        if self.discriminator_loss not in DISCRIMINATOR_LOSSES:
            raise ConfigError(
                f"fingerprint.discriminator_loss must be one of {DISCRIMINATOR_LOSSES}"
            )
        if self.num_optimised > self.num_candidates:
            raise ConfigError("fingerprint.num_optimised cannot exceed fingerprint.num_candidates")
        choices = {
            "reduction": ("sum", "mean"),
            "candidate_classes": ("balanced", "random"),
            "negative_objective": ("adversarial", "away"),
            "screen_negatives": ("adversarial", "not_original"),
            "adversarial_label_models": ("negative", "positive"),
            "discriminator_label": ("generator", "random"),
            "precision": ("fp32", "bf16"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"fingerprint.{name} must be one of {', '.join(allowed)}, "
                    f"got {getattr(self, name)!r}"
                )
        if self.latent_max_norm is not None and not self.latent_max_norm > 0:
            raise ConfigError(
                "fingerprint.latent_max_norm must be positive (a multiple of sqrt(z_dim)) "
                "or null for no bound"
            )
        if not self.screen_transforms:
            raise ConfigError(
                "fingerprint.screen_transforms names no transformation; list at least one of "
                f"{', '.join(TRANSFORM_NAMES)} (identity screens the plain image only)"
            )
        unknown = sorted(set(self.screen_transforms) - set(TRANSFORM_NAMES))
        if unknown:
            raise ConfigError(
                f"fingerprint.screen_transforms: unknown transformation {unknown[0]!r}; "
                f"known: {', '.join(TRANSFORM_NAMES)}"
            )
        if self.screen_draws < 1:
            raise ConfigError(
                f"fingerprint.screen_draws must be at least 1, got {self.screen_draws}"
            )
        if not 0 < self.screen_min_pass <= 1:
            raise ConfigError(
                f"fingerprint.screen_min_pass must be in (0, 1], got {self.screen_min_pass}"
            )


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


@contextlib.contextmanager
def frozen(models: Sequence[nn.Module]) -> Iterator[None]:
    """Eval mode and no parameter gradients for ``models``, restored afterwards."""
    states = [[p.requires_grad for p in m.parameters()] for m in models]
    modes = [m.training for m in models]
    for model in models:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
    try:
        yield
    finally:
        for model, flags, mode in zip(models, states, modes):
            model.train(mode)
            for p, flag in zip(model.parameters(), flags):
                p.requires_grad_(flag)


def _batched(fn, count: int, batch_size: int) -> torch.Tensor:  # type: ignore[no-untyped-def]
    return torch.cat(
        [fn(slice(i, min(i + batch_size, count))) for i in range(0, count, batch_size)]
    )


@torch.no_grad()
def generate_images(
    generator: nn.Module, z: torch.Tensor, y: torch.Tensor, batch_size: int
) -> torch.Tensor:
    """G(z, y) in chunks: ``(N, 3, 32, 32)`` in [0, 1]."""
    return _batched(lambda s: generator(z[s], y[s]), len(z), batch_size)


@torch.no_grad()
def predictions(models: Sequence[nn.Module], images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Top-1 labels of every model: ``(num_models, N)``."""
    return torch.stack(
        [_batched(lambda s, m=m: m(images[s]).argmax(1), len(images), batch_size) for m in models]
    )


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Round to 8-bit levels, as the images will be stored and seen by suspects."""
    return torch.round(images.clamp(0, 1) * 255) / 255


def draw_candidates(
    z_dim: int, num_classes: int, config: NaturalFingerConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents ``(num_candidates, z_dim)`` ~ N(0, I) and generator classes, from the seed.

    Classes are uniform draws (``candidate_classes: random``, the paper's) or a shuffled
    round-robin over the classes (``balanced``), so every class has its share of candidates.
    """
    gen = torch.Generator().manual_seed(config.seed)
    z = torch.randn(config.num_candidates, z_dim, generator=gen)
    if config.candidate_classes == "balanced":
        cycle = torch.arange(config.num_candidates) % num_classes
        y = cycle[torch.randperm(config.num_candidates, generator=gen)]
    else:
        y = torch.randint(0, num_classes, (config.num_candidates,), generator=gen)
    return z, y


def balanced_pick(labels: torch.Tensor, count: int) -> torch.Tensor:
    """Up to ``count`` positions of ``labels`` taken round-robin over its classes (each class in
    its original order), returned in ascending order: the initial samples spread over y_orig."""
    queues = [torch.nonzero(labels == c).squeeze(1).tolist() for c in labels.unique().tolist()]
    picked: list[int] = []
    depth = 0
    while len(picked) < count and any(depth < len(q) for q in queues):
        picked.extend(q[depth] for q in queues if depth < len(q))
        depth += 1
    return torch.tensor(sorted(picked[:count]), dtype=torch.long)


def select_initial(
    generator: nn.Module,
    positives: Sequence[nn.Module],
    z: torch.Tensor,
    y: torch.Tensor,
    config: NaturalFingerConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep candidates every positive model labels alike; returns (z, y_gen, y_orig).

    Raises:
        FingerprintError: no candidate passes (the generator or the positives are too poor).
    """
    images = generate_images(generator, z, y, config.batch_size)
    votes = predictions(positives, images, config.batch_size)
    agree = (votes == votes[0]).all(dim=0)
    agreeing = torch.nonzero(agree).squeeze(1)
    if config.candidate_classes == "balanced":
        chosen = agreeing[balanced_pick(votes[0, agreeing], config.num_optimised)]
    else:
        chosen = agreeing[: config.num_optimised]
    logger.info(
        "initial selection: %d of %d candidates agree on all %d positives",
        int(agree.sum()),
        len(z),
        len(positives),
    )
    if len(chosen) == 0:
        raise FingerprintError(
            "no candidate image is labelled alike by every positive model; raise "
            "fingerprint.num_candidates or train the generator and positives longer"
        )
    if len(chosen) < config.num_optimised:
        logger.warning("only %d initial samples (asked for %d)", len(chosen), config.num_optimised)
    return z[chosen], y[chosen], votes[0, chosen]


def fgsm_labels(
    generator: nn.Module,
    models: Sequence[nn.Module],
    z: torch.Tensor,
    y_gen: torch.Tensor,
    y_orig: torch.Tensor,
    config: NaturalFingerConfig,
    num_classes: int,
) -> torch.Tensor:
    """Adversarial labels: the majority label of ``models`` on their FGSM images of G(z).

    One untargeted FGSM step of size ``fgsm_epsilon`` away from ``y_orig`` per model,
    cross-entropy, clipped to [0, 1]; ties go to the smaller class index.
    """
    images = generate_images(generator, z, y_gen, config.batch_size)
    votes = torch.zeros(len(z), num_classes, dtype=torch.long)
    for model in models:
        for start in range(0, len(z), config.batch_size):
            part = slice(start, start + config.batch_size)
            x = images[part].clone().requires_grad_(True)
            loss = nn.functional.cross_entropy(model(x), y_orig[part])
            (grad,) = torch.autograd.grad(loss, x)
            adversarial = (x + config.fgsm_epsilon * grad.sign()).clamp(0, 1)
            with torch.no_grad():
                label = model(adversarial).argmax(1)
            votes[part] += nn.functional.one_hot(label, num_classes)
    return votes.argmax(1)


def random_labels(y_orig: torch.Tensor, num_classes: int, seed: int) -> torch.Tensor:
    """A uniformly random label different from ``y_orig`` (the ablation without trick 1)."""
    gen = torch.Generator().manual_seed(seed + 1)
    offset = torch.randint(1, num_classes, y_orig.shape, generator=gen)
    return (y_orig + offset) % num_classes


def plan_steps(num_positive: int, num_negative: int, config: NaturalFingerConfig) -> list[StepPlan]:
    """The whole schedule: per step, model mini-batches, transformation and D-label seed.

    Every epoch shuffles the positive and the negative models separately and walks through them
    ``positives_per_step`` + ``negatives_per_step`` at a time; the shorter list wraps around.
    """
    rng = np.random.default_rng(config.seed + 2)
    names = TRANSFORM_NAMES if config.input_transforms else ("identity",)
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
    """

    k: float = 50.0
    negatives_away: bool = False
    bf16: bool = False

    @classmethod
    def of(cls, config: NaturalFingerConfig) -> Objective:
        """The objective a config asks for."""
        return cls(config.k, config.negative_objective == "away", config.precision == "bf16")

    def autocast(self, device: torch.device) -> torch.autocast:
        """The autocast context of the step's forward passes (a no-op in fp32)."""
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16)


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
    total = images.new_zeros(())
    losses, hits = [], []
    for model in models:
        logits = model(images).float()
        per_image = cw_away_loss(logits, target, k) if away else cw_loss(logits, target, k)
        loss = per_image.mean()
        total = total + loss
        losses.append(loss.detach())
        at_target = logits.argmax(1) == target
        hits.append((~at_target if away else at_target).float().mean().detach())
    empty = images.new_zeros(0)
    return GroupLoss(
        total,
        torch.stack(losses) if losses else empty,
        torch.stack(hits) if hits else empty,
    )


def discriminator_labels(
    plan: StepPlan, y_gen: torch.Tensor, num_classes: int, config: NaturalFingerConfig
) -> torch.Tensor:
    """The class labels given to D this step."""
    if config.discriminator_label == "generator":
        return y_gen
    gen = torch.Generator().manual_seed(plan.label_seed)
    return torch.randint(0, num_classes, y_gen.shape, generator=gen)


def screen(
    images: torch.Tensor,
    positives: Sequence[nn.Module],
    negatives: Sequence[nn.Module],
    y_orig: torch.Tensor,
    y_adv: torch.Tensor,
    config: NaturalFingerConfig,
) -> torch.Tensor:
    """Boolean mask of the images that survive screening.

    A view of an image (the plain image, or one drawn transformation of it) passes when every
    positive model answers y_orig and the negatives answer as ``screen_negatives`` asks (all
    y_adv, or none y_orig). An image survives when its plain view passes and at least
    ``screen_min_pass`` of its transformed views do (``screen_draws`` draws of each of
    ``screen_transforms``). The paper's screen is one draw of each of the five, all passing.
    """
    rng = np.random.default_rng(config.seed + 3)

    def passes(view: torch.Tensor) -> torch.Tensor:
        ok = (predictions(positives, view, config.batch_size) == y_orig).all(dim=0)
        answers = predictions(negatives, view, config.batch_size)
        if config.screen_negatives == "adversarial":
            return ok & (answers == y_adv).all(dim=0)
        return ok & (answers != y_orig).all(dim=0)

    keep = passes(images)
    if config.screen_negatives == "adversarial":
        keep &= y_orig != y_adv
    passed = torch.zeros(len(images))
    views = 0
    for _ in range(config.screen_draws):
        for name in config.screen_transforms:
            passed += passes(apply_transform(images, sample_params(name, rng))).float()
            views += 1
    return keep & (passed >= config.screen_min_pass * views - 1e-9)


def generate(
    generator: nn.Module,
    discriminator: nn.Module,
    positives: Sequence[nn.Module],
    negatives: Sequence[nn.Module],
    config: NaturalFingerConfig,
    *,
    z_dim: int,
    num_classes: int = 10,
    progress: bool = True,
    engine: EngineFactory | None = None,
    checkpoint_uri: str | None = None,
    checkpoint_every: int = 50,
    on_step: StepObserver | None = None,
) -> FingerprintSet:
    """Run NaturalFinger end to end (selection, labels, optimisation, screening).

    Args:
        generator: G(z, y) -> ``(N, 3, 32, 32)`` in [0, 1].
        discriminator: D(x, y) -> ``(N,)`` scores, real high.
        positives: models derived from the owner's (white-box).
        negatives: independent models (white-box).
        config: see :class:`NaturalFingerConfig`.
        z_dim: the generator's latent size.
        num_classes: number of classes.
        progress: show a progress bar.
        engine: ``engine(y_gen, y_orig, y_adv)`` builds the model-gradient engine for the
            optimisation (default: :class:`LocalModelGradients`, the single-process reference;
            ``nf_dist.distributed.sharded.RayModelGradients`` shards the models over Ray actors).
        checkpoint_uri, checkpoint_every: save the optimisation every so many steps and resume
            a killed run from there.
        on_step: ``on_step(step, snapshot)`` after every optimisation step; ``snapshot()``
            screens the current latents into the set the run would return if it stopped now
            (possibly empty). Ray Tune trials report intermediate objectives through it.

    Returns:
        The screened fingerprint set (at most ``num_fingerprints``), with the optimisation history
        in ``info``.

    Raises:
        FingerprintError: no initial sample, a non-finite loss, or nothing survives screening.
    """
    if not positives or not negatives:
        raise ConfigError("NaturalFinger needs at least one positive and one negative model")
    started = time.perf_counter()
    with frozen([generator, discriminator, *positives, *negatives]):
        z0, y_gen, y_orig = select_initial(
            generator, positives, *draw_candidates(z_dim, num_classes, config), config
        )
        if config.adversarial_labels:
            voters = negatives if config.adversarial_label_models == "negative" else positives
            y_adv = fgsm_labels(generator, voters, z0, y_gen, y_orig, config, num_classes)
        else:
            y_adv = random_labels(y_orig, num_classes, config.seed)

        def snapshot(z: torch.Tensor, history: GenerationHistory) -> FingerprintSet:
            return screened_set(
                generator, positives, negatives, z, (y_gen, y_orig, y_adv), config, history
            )

        observe = None
        if on_step is not None:
            callback = on_step

            def observe(step: int, z: torch.Tensor, history: GenerationHistory) -> None:
                callback(step, lambda: snapshot(z, history))

        z, history = optimise_latents(
            generator,
            discriminator,
            positives,
            negatives,
            z0,
            y_gen,
            y_orig,
            y_adv,
            config,
            num_classes=num_classes,
            progress=progress,
            engine=engine(y_gen, y_orig, y_adv) if engine is not None else None,
            checkpoint_uri=checkpoint_uri,
            checkpoint_every=checkpoint_every,
            on_step=observe,
        )
        fingerprints = snapshot(z, history)
    logger.info(
        "screening kept %d of %d optimised images",
        fingerprints.info["num_passed_screening"],
        len(z),
    )
    if len(fingerprints) == 0:
        raise FingerprintError(
            "no optimised image passed screening; raise fingerprint.steps or num_optimised"
        )
    if len(fingerprints) < config.num_fingerprints:
        logger.warning(
            "only %d fingerprints passed screening (asked for %d)",
            len(fingerprints),
            config.num_fingerprints,
        )
    fingerprints.info.update(num_selected=len(z0), seconds=time.perf_counter() - started)
    return fingerprints


StepObserver = Callable[[int, Callable[[], FingerprintSet]], None]


def screened_set(
    generator: nn.Module,
    positives: Sequence[nn.Module],
    negatives: Sequence[nn.Module],
    z: torch.Tensor,
    labels: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    config: NaturalFingerConfig,
    history: GenerationHistory,
) -> FingerprintSet:
    """The latents' images, stored as 8-bit, screened (at most ``num_fingerprints``; may be
    empty)."""
    y_gen, y_orig, y_adv = labels
    with torch.no_grad():
        images = quantize(generate_images(generator, z, y_gen, config.batch_size))
    keep = screen(images, positives, negatives, y_orig, y_adv, config)
    kept = torch.nonzero(keep).squeeze(1)[: config.num_fingerprints]
    return FingerprintSet(
        images=to_uint8(images[kept]),
        y_orig=y_orig[kept].numpy(),
        y_adv=y_adv[kept].numpy(),
        latents=z[kept].numpy(),
        gen_labels=y_gen[kept].numpy(),
        method="naturalfinger",
        config=asdict(config),
        info={
            "num_passed_screening": int(keep.sum()),
            "final_loss": history.loss[-1] if history.loss else None,
            "final_success": history.success[-1] if history.success else None,
        },
    )


@dataclass
class ModelStep:
    """What the classifiers contribute to one step.

    Attributes:
        grad: d(positive + negative loss) / dz, ``(N, z_dim)``.
        positive: mean CW loss over the step's positive models.
        negative: mean CW loss over the step's negative models.
        hits: per model of the step (positives first), the share of images at their target.
        losses: per model of the step (positives first), its mean CW loss.
    """

    grad: torch.Tensor
    positive: float
    negative: float
    hits: torch.Tensor
    losses: torch.Tensor


class ModelGradients(Protocol):
    """An engine that evaluates the step's positive and negative models on G(z).

    The single-process :class:`LocalModelGradients` is the reference; the sharded Ray engine
    (``nf_dist.distributed``) splits the same sums across actors and must agree with it.
    """

    def __call__(self, z: torch.Tensor, plan: StepPlan) -> ModelStep: ...


EngineFactory = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], ModelGradients]


def partial_model_gradient(
    generator: nn.Module,
    z: torch.Tensor,
    y_gen: torch.Tensor,
    transform: TransformSpec,
    positives: Sequence[nn.Module],
    negatives: Sequence[nn.Module],
    y_orig: torch.Tensor,
    y_adv: torch.Tensor,
    objective: Objective,
    num_positive: int,
    num_negative: int,
) -> tuple[torch.Tensor, GroupLoss, GroupLoss]:
    """d/dz of ``sum_positives CW / num_positive + sum_negatives CW / num_negative`` on
    T(G(z)), with the groups' losses. The reference passes all of a step's models; each shard
    of the Ray engine passes its own, and the shards' gradients add up to the reference's."""
    z = z.detach().requires_grad_(True)
    with objective.autocast(z.device):
        transformed = apply_transform(generator(z, y_gen), transform)
        pos = model_group_loss(positives, transformed, y_orig, objective.k)
        if objective.negatives_away:
            neg = model_group_loss(negatives, transformed, y_orig, objective.k, away=True)
        else:
            neg = model_group_loss(negatives, transformed, y_adv, objective.k)
    # Each group's sum is divided by the step's count of that group (not the shard's), so the
    # shards' partial gradients add up to the reference's means.
    (grad,) = torch.autograd.grad(pos.total / num_positive + neg.total / num_negative, z)
    return grad, pos, neg


class LocalModelGradients:
    """All models in this process: the reference engine."""

    def __init__(
        self,
        generator: nn.Module,
        positives: Sequence[nn.Module],
        negatives: Sequence[nn.Module],
        y_gen: torch.Tensor,
        y_orig: torch.Tensor,
        y_adv: torch.Tensor,
        objective: Objective,
    ) -> None:
        self.generator, self.positives, self.negatives = generator, positives, negatives
        self.y_gen, self.y_orig, self.y_adv, self.objective = y_gen, y_orig, y_adv, objective

    def __call__(self, z: torch.Tensor, plan: StepPlan) -> ModelStep:
        grad, pos, neg = partial_model_gradient(
            self.generator,
            z,
            self.y_gen,
            plan.transform,
            [self.positives[i] for i in plan.positives],
            [self.negatives[i] for i in plan.negatives],
            self.y_orig,
            self.y_adv,
            self.objective,
            len(plan.positives),
            len(plan.negatives),
        )
        return ModelStep(
            grad,
            (pos.total / len(plan.positives)).item(),
            (neg.total / len(plan.negatives)).item(),
            torch.cat([pos.hits, neg.hits]),
            torch.cat([pos.losses, neg.losses]),
        )


def optimise_latents(
    generator: nn.Module,
    discriminator: nn.Module,
    positives: Sequence[nn.Module],
    negatives: Sequence[nn.Module],
    z0: torch.Tensor,
    y_gen: torch.Tensor,
    y_orig: torch.Tensor,
    y_adv: torch.Tensor,
    config: NaturalFingerConfig,
    *,
    num_classes: int,
    progress: bool = True,
    engine: ModelGradients | None = None,
    checkpoint_uri: str | None = None,
    checkpoint_every: int = 50,
    on_step: Callable[[int, torch.Tensor, GenerationHistory], None] | None = None,
) -> tuple[torch.Tensor, GenerationHistory]:
    """SGD on the latents only; returns the final latents and the per-step history.

    ``engine`` evaluates the classifiers (default: :class:`LocalModelGradients` over
    ``positives`` and ``negatives``); the discriminator term is always computed here. With
    ``checkpoint_uri`` the state is saved every ``checkpoint_every`` steps and a re-run of the
    same run resumes from it (see :mod:`nf_dist.fingerprint.progress`). ``on_step(step, z,
    history)`` observes every step (the history of the whole run, resumed part included).
    """
    if engine is None:
        engine = LocalModelGradients(
            generator, positives, negatives, y_gen, y_orig, y_adv, Objective.of(config)
        )
    plans = plan_steps(len(positives), len(negatives), config)
    saved = None
    if checkpoint_uri is not None:
        from nf_dist.fingerprint.progress import load_progress

        template = torch.optim.SGD([z0.clone().requires_grad_(True)], lr=config.lr)
        saved = load_progress(checkpoint_uri, z0, config, template)
    start, history = 0, GenerationHistory()
    if saved is not None:
        start, history = saved.next_step, GenerationHistory(**saved.history)

    def merged(done: GenerationHistory) -> GenerationHistory:
        return GenerationHistory(
            *(getattr(history, f) + getattr(done, f) for f in GenerationHistory.FIELDS)
        )

    def checkpoint(
        step: int, z: torch.Tensor, optimizer: torch.optim.Optimizer, done: GenerationHistory
    ) -> None:
        if checkpoint_uri is not None and (
            (step + 1) % checkpoint_every == 0 or step + 1 == len(plans)
        ):
            from nf_dist.fingerprint.progress import save_progress

            save_progress(checkpoint_uri, step + 1, z, z0, optimizer, merged(done), config)
        if on_step is not None:
            on_step(step, z, merged(done))

    z, done = descend(
        generator,
        discriminator,
        engine,
        plans,
        saved.z if saved is not None else z0,
        y_gen,
        config,
        num_classes,
        progress,
        first_step=start,
        optimizer_state=saved.optimizer_state if saved is not None else None,
        on_step=checkpoint if checkpoint_uri is not None or on_step is not None else None,
    )
    return z, merged(done)


def descend(
    generator: nn.Module,
    discriminator: nn.Module,
    engine: ModelGradients,
    plans: Sequence[StepPlan],
    z0: torch.Tensor,
    y_gen: torch.Tensor,
    config: NaturalFingerConfig,
    num_classes: int,
    progress: bool = True,
    *,
    first_step: int = 0,
    optimizer_state: dict | None = None,
    on_step: Callable[[int, torch.Tensor, torch.optim.Optimizer, GenerationHistory], None]
    | None = None,
) -> tuple[torch.Tensor, GenerationHistory]:
    """The optimisation loop shared by every engine: per step, the engine's model gradient
    plus lambda times the discriminator term's (scaled by N under ``reduction: sum``), one SGD
    step on z, then the latents projected into the ``latent_max_norm`` ball when one is set.

    ``first_step`` and ``optimizer_state`` resume a run; ``on_step(step, z, optimizer, history)``
    runs after every step (checkpointing).

    Raises:
        FingerprintError: a non-finite loss or gradient, naming the step's models.
    """
    z = z0.clone().requires_grad_(True)
    optimizer = torch.optim.SGD(
        [z],
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov and config.momentum > 0,
    )
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    history = GenerationHistory()
    lambda_d = config.lambda_d if config.discriminator else 0.0
    # The prior N(0, I) puts latents near the sphere of radius sqrt(z_dim).
    max_norm = config.latent_max_norm * math.sqrt(z.shape[1]) if config.latent_max_norm else None
    bar = tqdm(
        range(first_step, len(plans)), desc="naturalfinger", disable=not progress, leave=False
    )
    for step in bar:
        plan = plans[step]
        models = engine(z.detach(), plan)
        optimizer.zero_grad(set_to_none=True)
        disc_loss = z.new_zeros(())
        if lambda_d > 0:
            labels = discriminator_labels(plan, y_gen, num_classes, config)
            with Objective.of(config).autocast(z.device):
                scores = discriminator(generator(z, y_gen), labels).float()
            disc_loss = discriminator_loss(scores, config.discriminator_loss).mean()
            (lambda_d * disc_loss).backward()
            assert z.grad is not None
            z.grad += models.grad
        else:
            z.grad = models.grad.clone()
        loss = models.positive + models.negative + lambda_d * disc_loss.item()
        if not (math.isfinite(loss) and bool(torch.isfinite(z.grad).all())):
            raise FingerprintError(
                f"non-finite loss or gradient at step {step} (positive {models.positive}, "
                f"negative {models.negative}, discriminator {disc_loss.item()}) with positives "
                f"{plan.positives} and negatives {plan.negatives}; lower fingerprint.lr"
            )
        if config.reduction == "sum":
            # Every term is a mean over the N images and image i depends on z_i alone, so
            # d(mean)/dz_i = d(loss_i)/dz_i / N: scaling by N makes lr the per-latent step.
            z.grad.mul_(len(z))
        optimizer.step()
        if max_norm is not None:
            with torch.no_grad():
                norms = z.norm(dim=1, keepdim=True)  # (N, 1)
                z.mul_(torch.clamp(max_norm / norms.clamp_min(1e-12), max=1.0))
        history.loss.append(loss)
        history.positive.append(models.positive)
        history.negative.append(models.negative)
        history.disc.append(disc_loss.item())
        history.success.append(float(models.hits.mean()))
        if on_step is not None:
            on_step(step, z.detach(), optimizer, history)
    return z.detach(), history
