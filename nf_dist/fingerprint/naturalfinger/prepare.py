"""Stage 1 of NaturalFinger: initial samples and their labels (Algorithm 1, steps 1-2).

Draw latents and generator classes, keep the candidates every positive model labels alike (that
label is ``y_orig``), and give each an adversarial label ``y_adv``: the majority label of one
untargeted FGSM step against the negative models (the paper; the authors' code used the
positives), or a random other label when the trick is off.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from nf_dist.errors import FingerprintError
from nf_dist.fingerprint.naturalfinger.config import NaturalFingerConfig
from nf_dist.fingerprint.naturalfinger.images import generate_images, predictions

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Targets:
    """Per latent: the generator's class and the labels the models are pushed to.

    Shapes: each ``(N,)`` long. ``y_orig`` is what positives (and a stolen suspect) answer,
    ``y_adv`` what negatives were pushed to.
    """

    y_gen: torch.Tensor
    y_orig: torch.Tensor
    y_adv: torch.Tensor


@dataclass(frozen=True)
class Prepared:
    """The initial latents ``(N, z_dim)`` and their targets: the optimisation's starting point."""

    z0: torch.Tensor
    targets: Targets


def prepare(
    generator: nn.Module,
    positives: Sequence[nn.Module],
    negatives: Sequence[nn.Module],
    config: NaturalFingerConfig,
    z_dim: int,
    num_classes: int,
) -> Prepared:
    """Select the initial samples and label them (models must be frozen, see ``frozen``).

    Raises:
        FingerprintError: no candidate is labelled alike by every positive.
    """
    z, y_gen, y_orig = select_initial(
        generator, positives, *draw_candidates(z_dim, num_classes, config), config, negatives
    )
    if config.adversarial_labels:
        voters = negatives if config.adversarial_label_models == "negative" else positives
        y_adv = fgsm_labels(generator, voters, z, y_gen, y_orig, config, num_classes)
    else:
        y_adv = random_labels(y_orig, num_classes, config.seed)
    return Prepared(z, Targets(y_gen, y_orig, y_adv))


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
    negatives: Sequence[nn.Module] = (),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep candidates every positive model labels alike, or at least ``initial_agreement`` of
    them as the first positive does (then most-agreed first), and with ``initial_labels:
    off_class`` other than their generator class; returns (z, y_gen, y_orig: the first
    positive's labels).

    With ``initial_selection: unique`` those agreeing candidates are ranked by how few
    ``negatives`` already answer y_orig (stable, so ties keep the draw order) before the first
    ``num_optimised`` (or the balanced pick) are taken, and come out in that rank order.

    Raises:
        FingerprintError: no candidate passes (the generator or the positives are too poor).
    """
    images = generate_images(generator, z, y, config.batch_size)
    votes = predictions(positives, images, config.batch_size)
    share = (votes == votes[0]).float().mean(dim=0)
    agree = share >= config.initial_agreement - 1e-6  # at 1.0: every positive alike
    if config.initial_labels == "off_class":
        agree &= votes[0] != y
    agreeing = torch.nonzero(agree).squeeze(1)
    if config.initial_agreement < 1:  # stable: equal shares keep the draw order
        agreeing = agreeing[torch.argsort(share[agreeing], descending=True, stable=True)]
    if config.initial_selection == "unique" and len(negatives) and len(agreeing):
        # Start where the owner's lineage already differs from independent models: the
        # optimisation then has less to undo and the image is less likely to be a plain,
        # universally recognised object that every held-out model labels alike.
        shared = predictions(negatives, images[agreeing], config.batch_size) == votes[0, agreeing]
        agreeing = agreeing[torch.argsort(shared.sum(0), stable=True)]
    if config.candidate_classes == "balanced":
        chosen = agreeing[balanced_pick(votes[0, agreeing], config.num_optimised)]
    else:
        chosen = agreeing[: config.num_optimised]
    logger.info(
        "initial selection: %d of %d candidates agree on at least %.0f%% of %d positives",
        int(agree.sum()),
        len(z),
        100 * config.initial_agreement,
        len(positives),
    )
    if len(chosen) == 0:
        raise FingerprintError(
            "no candidate image is labelled alike by enough positive models; raise "
            "fingerprint.num_candidates, lower fingerprint.initial_agreement or train the "
            "generator and positives longer"
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
