"""MetaFinger (Yang et al., IJCAI 2022): meta-training real images on model pools.

For each positive "anchor" model, under one random input transformation per step, minimise
mean KL(anchor || 3 random other positives) - alpha * mean KL(anchor || 3 random negatives) over
the pixels (Adam, clamp to [0, 1]), starting from ``num_seeds`` real images; then screen: keep an
image only when every positive model gives the source's label and no negative does. The expected
label is the source's prediction on the stored 8-bit image.
Adapted: the authors screen on separate validation models; pass them as the context's models
(the evaluation keeps generation and evaluation models apart).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from nf_dist.data.augment import to_input
from nf_dist.errors import ConfigError, FingerprintError
from nf_dist.fingerprint.fingerprint_set import FingerprintSet, to_uint8
from nf_dist.fingerprint.methods.base import (
    METHODS,
    FingerprintContext,
    FingerprintMethod,
    RunOptions,
    majority_labels,
)
from nf_dist.fingerprint.transforms import apply_transform, sample_transform
from nf_dist.models.inference import predict


@dataclass(frozen=True)
class MetaFingerConfig:
    """The paper's values: 70 seeds, alpha 1, Adam lr 0.01, 10 epochs; 3 + 3 sampled models."""

    num_fingerprints: int = 100
    num_seeds: int = 70
    alpha: float = 1.0
    lr: float = 0.01
    epochs: int = 10
    steps_per_epoch: int = 10
    models_per_side: int = 3
    seed: int = 0


def kl(anchor: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """Mean over images of KL(softmax(anchor) || softmax(other)) from logits."""
    log_p, log_q = F.log_softmax(anchor, 1), F.log_softmax(other, 1)
    return (log_p.exp() * (log_p - log_q)).sum(1).mean()


@METHODS.register("metafinger")
class MetaFinger(FingerprintMethod):
    """See the module docstring."""

    config_class = MetaFingerConfig

    def generate(
        self, context: FingerprintContext, config: MetaFingerConfig, run: RunOptions | None = None
    ) -> FingerprintSet:
        if context.clean is None:
            raise ConfigError("MetaFinger needs clean seed images (the owner's test split)")
        positives, negatives = list(context.positives), list(context.negatives)
        for model in [*positives, *negatives]:
            model.eval().requires_grad_(False)
        rng = np.random.default_rng(config.seed)
        seeds = rng.choice(len(context.clean), min(config.num_seeds, len(context.clean)), False)
        start = to_input(context.clean.images[np.sort(seeds)])
        candidates = []
        anchors = tqdm(positives, desc="metafinger", disable=not context.progress)
        for index, anchor in enumerate(anchors):
            others = [m for j, m in enumerate(positives) if j != index] or [anchor]
            pixels = start.clone().requires_grad_(True)
            optimizer = torch.optim.Adam([pixels], lr=config.lr)
            for _ in range(config.epochs * config.steps_per_epoch):
                x = apply_transform(pixels, sample_transform(rng))
                pos = rng.choice(len(others), min(config.models_per_side, len(others)), False)
                neg = rng.choice(len(negatives), min(config.models_per_side, len(negatives)), False)
                target = anchor(x)
                loss = torch.stack([kl(target, others[j](x)) for j in pos]).mean()
                loss = (
                    loss
                    - config.alpha * torch.stack([kl(target, negatives[j](x)) for j in neg]).mean()
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    pixels.clamp_(0, 1)
            candidates.append(to_uint8(pixels.detach()))
        images = np.concatenate(candidates)
        y_orig = predict(positives[0], images)
        agree = np.all([predict(m, images) == y_orig for m in positives], axis=0)
        unique = np.all([predict(m, images) != y_orig for m in negatives], axis=0)
        kept = np.nonzero(agree & unique)[0][: config.num_fingerprints]
        if len(kept) == 0:
            raise FingerprintError("no MetaFinger image passed screening; raise epochs or seeds")
        y_adv = majority_labels(negatives, images[kept], context.num_classes)
        return FingerprintSet(
            images=images[kept],
            y_orig=y_orig[kept],
            y_adv=y_adv,
            method="metafinger",
            config=asdict(config),
            info={"num_candidates": len(images), "num_passed_screening": int(len(kept))},
        )
