"""MetaV (Pan et al., KDD 2022), adapted to a label-only comparison.

The original learns fingerprint inputs jointly with a meta-verifier: an MLP that reads a suspect's
outputs on the fingerprints and says "stolen" or not. Here, as in the NaturalFinger paper's
comparison, the inputs start from uniform noise and are trained jointly with that verifier
(Adam, lr 0.001) on the owner's positive (label 1) and negative (label 0) models: the verifier
sees the softmax outputs of a model on all fingerprints, and binary cross-entropy flows into both
the verifier and the pixels. The verifier is then dropped: the fingerprints are scored by matching
rate against the source's labels on the stored 8-bit images, which is what a label-only API allows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from nf_dist.fingerprint.fingerprint_set import FingerprintSet, to_uint8
from nf_dist.fingerprint.methods.base import (
    METHODS,
    FingerprintContext,
    FingerprintMethod,
    RunOptions,
    majority_labels,
)
from nf_dist.models.inference import predict


@dataclass(frozen=True)
class MetaVConfig:
    """Adam at ``lr`` for ``steps`` on the pixels and the verifier (``hidden`` units)."""

    num_fingerprints: int = 100
    steps: int = 500
    lr: float = 0.001
    hidden: int = 128
    seed: int = 0


@METHODS.register("metav")
class MetaV(FingerprintMethod):
    """See the module docstring."""

    config_class = MetaVConfig

    def generate(
        self, context: FingerprintContext, config: MetaVConfig, run: RunOptions | None = None
    ) -> FingerprintSet:
        models = [*context.positives, *context.negatives]
        for model in models:
            model.eval().requires_grad_(False)
        roles = torch.tensor([1.0] * len(context.positives) + [0.0] * len(context.negatives))
        generator = torch.Generator().manual_seed(config.seed)
        pixels = torch.rand(config.num_fingerprints, 3, 32, 32, generator=generator)
        pixels.requires_grad_(True)
        torch.manual_seed(config.seed)
        verifier = nn.Sequential(
            nn.Linear(config.num_fingerprints * context.num_classes, config.hidden),
            nn.ReLU(),
            nn.Linear(config.hidden, 1),
        )
        optimizer = torch.optim.Adam([pixels, *verifier.parameters()], lr=config.lr)
        for _ in tqdm(range(config.steps), desc="metav", disable=not context.progress):
            outputs = torch.stack([F.softmax(m(pixels), 1).flatten() for m in models])
            loss = F.binary_cross_entropy_with_logits(verifier(outputs).squeeze(1), roles)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                pixels.clamp_(0, 1)
        stored = to_uint8(pixels.detach())
        y_orig = predict(context.positives[0], stored)
        y_adv = majority_labels(context.negatives, stored, context.num_classes)
        return FingerprintSet(
            images=stored,
            y_orig=y_orig,
            y_adv=y_adv,
            method="metav",
            config=asdict(config),
            info={"final_verifier_loss": float(loss.detach())},
        )
