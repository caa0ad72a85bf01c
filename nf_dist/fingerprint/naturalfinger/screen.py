"""Stage 3 of NaturalFinger: screening (Algorithm 1, step 4).

The optimised latents' images are stored as 8-bit (what a suspect will be queried with) and kept
only if the white-box models answer as intended under the screening transformations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

import numpy as np
import torch
from torch import nn

from nf_dist.fingerprint.ensembles import conferrability
from nf_dist.fingerprint.fingerprint_set import FingerprintSet, to_uint8
from nf_dist.fingerprint.naturalfinger.config import NaturalFingerConfig
from nf_dist.fingerprint.naturalfinger.images import (
    generate_images,
    label_probabilities,
    predictions,
    quantize,
)
from nf_dist.fingerprint.naturalfinger.prepare import Targets
from nf_dist.fingerprint.naturalfinger.schedule import GenerationHistory
from nf_dist.fingerprint.transforms import apply_transform, sample_params


def screen(
    images: torch.Tensor,
    positives: Sequence[nn.Module],
    negatives: Sequence[nn.Module],
    y_orig: torch.Tensor,
    y_adv: torch.Tensor,
    config: NaturalFingerConfig,
) -> torch.Tensor:
    """Boolean mask of the images that survive screening.

    A view of an image (the plain image, or one drawn transformation of it) passes, under the
    ``all`` rule, when every positive model answers y_orig and the negatives answer as
    ``screen_negatives`` asks (all y_adv, or none y_orig); under ``conferrability``, when the
    share of positives answering y_orig times the share of negatives not answering it reaches
    ``screen_conferrability``. An image survives when its plain view passes and at least
    ``screen_min_pass`` of its transformed views do (``screen_draws`` draws of each of
    ``screen_transforms``). The paper's screen is one draw of each of the five, all passing.
    """
    rng = np.random.default_rng(config.seed + 3)

    def passes(view: torch.Tensor) -> torch.Tensor:
        labels = predictions(positives, view, config.batch_size)  # (P, N)
        answers = predictions(negatives, view, config.batch_size)  # (Q, N)
        if config.screen_rule == "conferrability":
            score = conferrability(y_orig.numpy(), labels.numpy(), answers.numpy())
            return torch.from_numpy(score >= config.screen_conferrability - 1e-9)
        ok = (labels == y_orig).all(dim=0)
        if config.screen_negatives == "adversarial":
            return ok & (answers == y_adv).all(dim=0)
        return ok & (answers != y_orig).all(dim=0)

    keep = passes(images)
    if config.screen_negatives == "adversarial" and config.screen_rule == "all":
        keep &= y_orig != y_adv
    passed = torch.zeros(len(images))
    views = 0
    for _ in range(config.screen_draws):
        for name in config.screen_transforms:
            passed += passes(apply_transform(images, sample_params(name, rng))).float()
            views += 1
    return keep & (passed >= config.screen_min_pass * views - 1e-9)


def margin_order(
    images: torch.Tensor,
    positives: Sequence[nn.Module],
    negatives: Sequence[nn.Module],
    y_orig: torch.Tensor,
    batch_size: int,
) -> torch.Tensor:
    """Indices of ``images`` by white-box margin, largest first (ties: the given order): the
    smallest probability a positive gives y_orig minus the largest a negative gives it."""
    robust = label_probabilities(positives, images, y_orig, batch_size).min(dim=0).values
    shared = label_probabilities(negatives, images, y_orig, batch_size).max(dim=0).values
    return torch.argsort(shared - robust, stable=True)


def round_robin(order: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``order`` (indices, best first) taken round-robin over ``labels[order]``: every label's
    best in ``order``'s order, then every label's second, and so on."""
    seen: dict[int, int] = {}
    rounds = []
    for index in order.tolist():
        label = int(labels[index])
        rounds.append(seen.get(label, 0))
        seen[label] = rounds[-1] + 1
    # a stable sort by round keeps ``order`` within each round
    return order[torch.argsort(torch.tensor(rounds, dtype=torch.long), stable=True)]


def screened_set(
    generator: nn.Module,
    positives: Sequence[nn.Module],
    negatives: Sequence[nn.Module],
    z: torch.Tensor,
    targets: Targets,
    config: NaturalFingerConfig,
    history: GenerationHistory,
) -> FingerprintSet:
    """The latents' images, stored as 8-bit, screened (at most ``num_fingerprints``; may be
    empty), in ``config.screen_order``."""
    with torch.no_grad():
        images = quantize(generate_images(generator, z, targets.y_gen, config.batch_size))
    keep = screen(images, positives, negatives, targets.y_orig, targets.y_adv, config)
    survivors = torch.nonzero(keep).squeeze(1)
    if config.screen_order != "latent" and len(survivors):
        by_margin = margin_order(
            images[survivors], positives, negatives, targets.y_orig[survivors], config.batch_size
        )
        if config.screen_order == "margin_balanced":
            by_margin = round_robin(by_margin, targets.y_orig[survivors])
        survivors = survivors[by_margin]
    kept = survivors[: config.num_fingerprints]
    return FingerprintSet(
        images=to_uint8(images[kept]),
        y_orig=targets.y_orig[kept].numpy(),
        y_adv=targets.y_adv[kept].numpy(),
        latents=z[kept].numpy(),
        gen_labels=targets.y_gen[kept].numpy(),
        method="naturalfinger",
        config=asdict(config),
        info={
            "num_passed_screening": int(keep.sum()),
            "final_loss": history.loss[-1] if history.loss else None,
            "final_success": history.success[-1] if history.success else None,
        },
    )
