"""NaturalFinger's settings, validated where they are declared."""

from __future__ import annotations

import functools
import typing
from dataclasses import dataclass
from typing import Literal

from nf_dist.errors import ConfigError
from nf_dist.fingerprint.losses import DISCRIMINATOR_LOSSES
from nf_dist.fingerprint.transforms import TRANSFORM_NAMES
from nf_dist.hardware import Precision

#: Upper bounds that keep one run's tensors in memory (candidates are generated in one go).
LIMITS = {
    "num_fingerprints": 100_000,
    "num_candidates": 1_000_000,
    "num_optimised": 100_000,
    "steps": 1_000_000,
    "batch_size": 100_000,
}

#: Fields that act only after the optimisation (screening and the set's size): a finished
#: optimisation re-screened with other values of these is still the same run.
SCREENING_FIELDS = (
    "num_fingerprints",
    "screen_negatives",
    "screen_transforms",
    "screen_draws",
    "screen_min_pass",
    "screen_order",
    "screen_rule",
    "screen_conferrability",
)


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
        model_sampling: how a step's models are drawn: ``epochs`` walks shuffled epochs of
            ``positives_per_step`` + ``negatives_per_step`` (every model equally often: the
            paper); ``dropout`` keeps each model with chance ``1 - model_dropout`` (at least one
            of each side), as conferrable adversarial examples train against an ensemble
            (Lukas et al., 2021), so no step leans on one model standing in for "any stolen" or
            "any independent" model.
        model_dropout: the chance a model sits out a step under ``dropout`` sampling.
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
        initial_selection: ``agreement`` takes the first candidates every positive labels alike
            (the paper); ``unique`` ranks those by how few negatives already answer y_orig.
        initial_agreement: the least share of the positives that must give the first
            positive's (the source's) label for a candidate to be kept; 1.0 is every positive
            (the paper). Below 1.0 the kept candidates are taken most-agreed first: with an
            ensemble of cheap surrogates few natural images get one label from all of them
            (trend_cpu40: 167 of 15,000 from the source and 8 surrogates).
        initial_labels: ``off_class`` keeps only candidates the positives label other than the
            class the generator drew them as: the owner's lineage's own mistake on a natural
            image, which independent models share less often than the image's own class
            (paper: ``any``; benchmarks/quickstart/results/quickstart_uniqueness.md).
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
        screen_order: the order the survivors are stored in, which decides which are kept when
            more than ``num_fingerprints`` pass and what a query budget asks first: ``latent``
            (the latents' order; the paper keeps every survivor) or ``margin``: largest first,
            the white-box margin on the plain image, the smallest probability a (screening)
            positive gives y_orig minus the largest a (screening) negative gives it; or
            ``margin_balanced``: the same margin taken round-robin over y_orig (each label's
            surest, then each label's second, ...), so a budget spreads over the labels.
        screen_rule: ``all`` passes a view when every positive and every negative answers as
            ``screen_negatives`` asks (the paper); ``conferrability`` when the share of positives
            answering y_orig times the share of negatives not answering it reaches
            ``screen_conferrability`` (Lukas et al.'s score: with ensembles, one dissenting
            model out of 16 need not discard an image).
        screen_conferrability: the least conferrability score of a passing view.
        precision: ``auto`` (bf16 where the hardware runs it natively, else fp32;
            :mod:`nf_dist.hardware`), ``fp32``, or ``bf16``: the optimisation's forward passes
            (G, the classifiers, D) under bf16 autocast, 1.5-2x faster on CPUs with AVX512-BF16
            and on GPUs, 6-15x slower on AVX2-only CPUs; the latents, their gradients and every
            label decision (selection, y_adv, screening) stay fp32.
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
    model_sampling: Literal["epochs", "dropout"] = "epochs"
    model_dropout: float = 0.3
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
    initial_selection: Literal["agreement", "unique"] = "agreement"
    initial_agreement: float = 1.0
    initial_labels: Literal["any", "off_class"] = "any"
    negative_objective: Literal["adversarial", "away"] = "adversarial"
    screen_negatives: Literal["adversarial", "not_original"] = "adversarial"
    screen_transforms: tuple[str, ...] = TRANSFORM_NAMES
    screen_draws: int = 1
    screen_min_pass: float = 1.0
    screen_order: Literal["latent", "margin", "margin_balanced"] = "latent"
    screen_rule: Literal["all", "conferrability"] = "all"
    screen_conferrability: float = 0.9
    precision: Precision = "auto"
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
        for name, cap in LIMITS.items():
            if getattr(self, name) > cap:
                raise ConfigError(
                    f"fingerprint.{name} is {getattr(self, name)}, above the {cap} one run can "
                    "hold in memory; lower it (a set is built from thousands, not millions)"
                )
        if self.num_optimised > self.num_candidates:
            raise ConfigError("fingerprint.num_optimised cannot exceed fingerprint.num_candidates")
        for name, allowed in _choices().items():
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
        if not 0 <= self.model_dropout < 1:
            raise ConfigError(
                f"fingerprint.model_dropout must be in [0, 1), got {self.model_dropout}"
            )
        if not 0 < self.screen_conferrability <= 1:
            raise ConfigError(
                "fingerprint.screen_conferrability must be in (0, 1], got "
                f"{self.screen_conferrability}"
            )
        if not 0 < self.initial_agreement <= 1:
            raise ConfigError(
                f"fingerprint.initial_agreement must be in (0, 1], got {self.initial_agreement}"
            )
        if not 0 < self.screen_min_pass <= 1:
            raise ConfigError(
                f"fingerprint.screen_min_pass must be in (0, 1], got {self.screen_min_pass}"
            )


@functools.cache
def _choices() -> dict[str, tuple[str, ...]]:
    """The allowed values of every ``Literal`` field, read from the annotations (checked again in
    ``__post_init__`` because code builds configs without the loader's type check)."""
    hints = typing.get_type_hints(NaturalFingerConfig)
    return {
        name: typing.get_args(hint)
        for name, hint in hints.items()
        if typing.get_origin(hint) is Literal
    }
