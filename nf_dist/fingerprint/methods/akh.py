"""AKH: natural images the source misclassifies, compared by top-1 label.

The trivial label-only baseline named AKH in the QuRD toolbox (AAAI 2025), which reports ROC AUC
0.90 at 10 queries and 1.00 at 200 on SAC's CIFAR-10 benchmark: a stolen model inherits its
source's mistakes, so the owner queries clean images the source gets wrong and expects the
source's (wrong) labels. Nothing is optimised; the images are real test images.

``y_orig`` is the source's label (not the true one); ``y_adv`` the negatives' majority label.
The set's order is a shuffle by ``seed``, so a query budget B (the first B images) is a
deterministic random subset.

Example:
    >>> akh = METHODS.get("akh")()
    >>> fingerprints = akh.generate(context, AkhConfig(num_fingerprints=100))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np

from nf_dist.errors import ConfigError
from nf_dist.fingerprint.fingerprint_set import FingerprintSet
from nf_dist.fingerprint.methods.base import (
    METHODS,
    FingerprintContext,
    FingerprintMethod,
    RunOptions,
    majority_labels,
)
from nf_dist.models.inference import predict

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AkhConfig:
    """Up to ``num_fingerprints`` misclassified images, in an order shuffled by ``seed``."""

    num_fingerprints: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_fingerprints < 1:
            raise ConfigError(
                f"akh.num_fingerprints must be at least 1, got {self.num_fingerprints}"
            )


@METHODS.register("akh")
class MisclassifiedImages(FingerprintMethod):
    """Clean images the source labels wrongly; a suspect matches when it makes the same mistake."""

    config_class = AkhConfig

    def generate(
        self, context: FingerprintContext, config: AkhConfig, run: RunOptions | None = None
    ) -> FingerprintSet:
        clean = context.clean
        if clean is None or len(clean) == 0:
            raise ConfigError("akh needs clean labelled images (the owner's test split)")
        predicted = predict(context.positives[0], clean.images)
        wrong = np.flatnonzero(predicted != clean.labels)
        if len(wrong) == 0:
            raise ConfigError("the source labels every clean image correctly; akh has no image")
        rng = np.random.default_rng(config.seed)
        chosen = rng.permutation(wrong)[: config.num_fingerprints]
        if len(chosen) < config.num_fingerprints:
            logger.warning(
                "akh: only %d misclassified images (asked for %d)",
                len(chosen),
                config.num_fingerprints,
            )
        images = clean.images[chosen]
        return FingerprintSet(
            images=images,
            y_orig=predicted[chosen],
            y_adv=majority_labels(context.negatives, images, context.num_classes),
            method="akh",
            config=asdict(config),
            info={"num_misclassified": int(len(wrong)), "num_clean": int(len(clean))},
        )
