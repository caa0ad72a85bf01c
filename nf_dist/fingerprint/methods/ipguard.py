"""IPGuard (Cao et al., AsiaCCS 2021): data points near the source's classification boundary.

Start from clean images the source classifies correctly; optimise the pixels (Adam, clamp to
[0, 1]) so a target class t beats the original class o by a margin k while o still beats every
other class:  relu(Z_o - Z_t + k) + relu(max_{i not in {o, t}} Z_i - Z_o).  t is the least likely
class (the authors' choice). The expected label is the source's prediction on the stored 8-bit
image; ``y_adv`` records o. Adapted: images are optimised in batches; the paper's 1000 Adam steps
at lr 0.001 are the defaults.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from nf_dist.data.augment import to_input
from nf_dist.errors import ConfigError
from nf_dist.fingerprint.fingerprint_set import FingerprintSet, to_uint8
from nf_dist.fingerprint.methods.base import (
    METHODS,
    FingerprintContext,
    FingerprintMethod,
    RunOptions,
)
from nf_dist.models.inference import predict


@dataclass(frozen=True)
class IPGuardConfig:
    """Adam on the pixels: ``steps`` at ``lr``, margin ``k``; ``num_fingerprints`` images."""

    num_fingerprints: int = 100
    steps: int = 1000
    lr: float = 0.001
    k: float = 10.0
    seed: int = 0


def ipguard_loss(
    logits: torch.Tensor, original: torch.Tensor, target: torch.Tensor, k: float
) -> torch.Tensor:
    """Per-image IPGuard loss, ``(N,)``."""
    z_o = logits.gather(1, original[:, None]).squeeze(1)
    z_t = logits.gather(1, target[:, None]).squeeze(1)
    others = logits.clone()
    others.scatter_(1, original[:, None], float("-inf"))
    others.scatter_(1, target[:, None], float("-inf"))
    return torch.relu(z_o - z_t + k) + torch.relu(others.max(1).values - z_o)


@METHODS.register("ipguard")
class IPGuard(FingerprintMethod):
    """See the module docstring."""

    config_class = IPGuardConfig

    def generate(
        self, context: FingerprintContext, config: IPGuardConfig, run: RunOptions | None = None
    ) -> FingerprintSet:
        if context.clean is None:
            raise ConfigError("IPGuard needs clean images (the owner's test split)")
        source = context.positives[0].eval()
        correct = np.nonzero(predict(source, context.clean.images) == context.clean.labels)[0]
        if len(correct) == 0:
            raise ConfigError("the source classifies no clean image correctly")
        rng = np.random.default_rng(config.seed)
        chosen = np.sort(rng.choice(correct, min(config.num_fingerprints, len(correct)), False))
        images = to_input(context.clean.images[chosen]).contiguous()
        original = torch.as_tensor(context.clean.labels[chosen], dtype=torch.long)
        with torch.no_grad():
            target = source(images).argmin(1)
        pixels = images.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([pixels], lr=config.lr)
        for p in source.parameters():
            p.requires_grad_(False)
        for _ in tqdm(range(config.steps), desc="ipguard", disable=not context.progress):
            loss = ipguard_loss(source(pixels), original, target, config.k).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                pixels.clamp_(0, 1)
        stored = to_uint8(pixels.detach())
        return FingerprintSet(
            images=stored,
            y_orig=predict(source, stored),
            y_adv=original.numpy(),
            method="ipguard",
            config=asdict(config),
        )
