"""The trivial baseline: clean owner images, labelled by the source.

It shows how hard a benchmark is: independent models trained on the same task agree with the
source on most clean images, so a clean-image fingerprint barely separates stolen from independent.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class CleanConfig:
    """``num_fingerprints`` images drawn with ``seed`` from the clean set."""

    num_fingerprints: int = 100
    seed: int = 0


@METHODS.register("clean")
class CleanImages(FingerprintMethod):
    """Random clean images; ``y_orig`` is the source's label, ``y_adv`` the negatives' majority."""

    config_class = CleanConfig

    def generate(
        self, context: FingerprintContext, config: CleanConfig, run: RunOptions | None = None
    ) -> FingerprintSet:
        if context.clean is None or len(context.clean) == 0:
            raise ConfigError("the clean baseline needs clean images (the owner's test split)")
        rng = np.random.default_rng(config.seed)
        count = min(config.num_fingerprints, len(context.clean))
        images = context.clean.images[np.sort(rng.choice(len(context.clean), count, False))]
        y_orig = predict(context.positives[0], images)
        y_adv = majority_labels(context.negatives, images, context.num_classes)
        return FingerprintSet(
            images=images, y_orig=y_orig, y_adv=y_adv, method="clean", config=asdict(config)
        )
