"""Conferrable adversarial examples (Lukas et al., ICLR 2021): perturbations that transfer from
the source to its surrogates (models derived from it: students, extractions) and not to
reference models (independent ones).

The ensemble's output for class ``c`` is ``E_c(x) = mean_s p_s(x)_c * (1 - mean_r p_r(x)_c)``
over surrogate and reference softmaxes, each model dropped at random every step (``dropout``).
Starting from clean images ``x0`` the source classifies correctly, a perturbation ``delta`` in the
L-infinity ball ``epsilon`` minimises (Adam)::

    alpha * H(1, max_c E_c(x'))  -  beta * H(y0, M(x'))  +  gamma * H(M(x'), mean_s p_s(x'))

with ``x' = clip(x0 + delta, 0, 1)``: confer (high ensemble score), leave the source's original
class ``y0``, and keep the surrogates on the source's new label. Selection: an example is kept
when the source's label changed and its conferrability score
``share of surrogates answering M(x') * (1 - share of references answering it)`` reaches
``threshold``; the best scores first. The expected label is the source's on the stored 8-bit
image; ``y_adv`` is the references' majority.

Roles: the context's positives are the source (first) and its surrogates, its negatives the
references. Adapted: the authors' CIFAR-10 runs use larger surrogate and reference ensembles
trained for the purpose; the weights, epsilon, steps and dropout here are configurable and their
defaults are the paper's order of magnitude (alpha = beta = gamma = 1, dropout 0.3).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from nf_dist.data.augment import to_input
from nf_dist.errors import ConfigError, FingerprintError
from nf_dist.fingerprint.ensembles import conferrability, dropout_subset
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
class CaeConfig:
    """CAE's settings (see the module docstring).

    Attributes:
        num_fingerprints: the most examples kept.
        num_seeds: clean images (classified correctly by the source) perturbed.
        epsilon: the L-infinity bound on [0, 1] pixels.
        steps, lr: Adam steps on the perturbation, and its learning rate.
        alpha, beta, gamma: the weights of the conferrability, source-leaving and
            surrogate-agreement terms.
        dropout: the chance each surrogate and each reference is left out of one step
            (at least one of each stays).
        threshold: the least conferrability score an example needs to be kept.
        batch_size: seeds optimised together.
        seed: seeds the choice of clean images and the dropout.
    """

    num_fingerprints: int = 100
    num_seeds: int = 500
    epsilon: float = 0.05
    steps: int = 100
    lr: float = 0.005
    alpha: float = 1.0
    beta: float = 1.0
    gamma: float = 1.0
    dropout: float = 0.3
    threshold: float = 0.5
    batch_size: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.epsilon <= 1:
            raise ConfigError(f"cae.epsilon must be in (0, 1], got {self.epsilon}")
        if not 0 <= self.dropout < 1 or not 0 <= self.threshold <= 1:
            raise ConfigError("cae.dropout must be in [0, 1) and cae.threshold in [0, 1]")
        if min(self.num_fingerprints, self.num_seeds, self.steps, self.batch_size) < 1:
            raise ConfigError("cae: num_fingerprints, num_seeds, steps, batch_size must be >= 1")


def ensemble_scores(surrogates: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """``E_c = mean_s p_s,c * (1 - mean_r p_r,c)``: ``(S, N, C)`` and ``(R, N, C)`` softmax
    outputs -> ``(N, C)``."""
    return surrogates.mean(0) * (1 - references.mean(0))


@METHODS.register("cae")
class ConferrableAdversarialExamples(FingerprintMethod):
    """See the module docstring."""

    config_class = CaeConfig

    def generate(
        self, context: FingerprintContext, config: CaeConfig, run: RunOptions | None = None
    ) -> FingerprintSet:
        if context.clean is None:
            raise ConfigError("CAE needs clean seed images (the owner's test split)")
        if not context.negatives:
            raise ConfigError("CAE needs reference models (the context's negatives)")
        source = context.positives[0]
        surrogates = list(context.positives[1:]) or [source]
        references = list(context.negatives)
        for model in [source, *surrogates, *references]:
            model.eval().requires_grad_(False)
        correct = np.nonzero(predict(source, context.clean.images) == context.clean.labels)[0]
        if len(correct) == 0:
            raise ConfigError("the source classifies no clean image correctly")
        rng = np.random.default_rng(config.seed)
        chosen = np.sort(rng.choice(correct, min(config.num_seeds, len(correct)), False))
        batches = range(0, len(chosen), config.batch_size)
        stored = [
            self._perturb(
                source,
                surrogates,
                references,
                context.clean.images[chosen[i : i + config.batch_size]],
                config,
                rng,
            )
            for i in tqdm(batches, desc="cae", disable=not context.progress)
        ]
        images = np.concatenate(stored)
        original = context.clean.labels[chosen]
        y_orig = predict(source, images)
        scores = conferrability(
            y_orig,
            np.stack([predict(m, images) for m in surrogates]),
            np.stack([predict(m, images) for m in references]),
        )
        passed = np.nonzero((y_orig != original) & (scores >= config.threshold))[0]
        kept = passed[np.argsort(-scores[passed], kind="stable")][: config.num_fingerprints]
        if len(kept) == 0:
            raise FingerprintError(
                f"no CAE example reached conferrability {config.threshold} (best "
                f"{scores.max():.2f}); raise epsilon or steps, or lower the threshold"
            )
        return FingerprintSet(
            images=images[kept],
            y_orig=y_orig[kept],
            y_adv=majority_labels(references, images[kept], context.num_classes),
            method="cae",
            config=asdict(config),
            info={
                "num_candidates": len(images),
                "num_passed_screening": int(len(passed)),
                "conferrability": [float(s) for s in scores[kept]],
            },
        )

    @staticmethod
    def _perturb(
        source: torch.nn.Module,
        surrogates: list[torch.nn.Module],
        references: list[torch.nn.Module],
        clean: np.ndarray,
        config: CaeConfig,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """One batch of seeds -> its perturbed images, uint8 ``(N, 32, 32, 3)``."""
        x0 = to_input(clean).contiguous()  # (N, 3, 32, 32) in [0, 1]
        with torch.no_grad():
            y0 = source(x0).argmax(1)
        delta = torch.zeros_like(x0, requires_grad=True)
        optimizer = torch.optim.Adam([delta], lr=config.lr)
        for _ in range(config.steps):
            x = (x0 + delta).clamp(0, 1)
            logits = source(x)
            kept_s = dropout_subset(len(surrogates), config.dropout, rng)
            kept_r = dropout_subset(len(references), config.dropout, rng)
            p_s = torch.stack([surrogates[i](x).softmax(1) for i in kept_s])  # (S', N, C)
            p_r = torch.stack([references[i](x).softmax(1) for i in kept_r])  # (R', N, C)
            confer = -torch.log(ensemble_scores(p_s, p_r).max(1).values.clamp_min(1e-12))
            leave = F.cross_entropy(logits, y0, reduction="none")
            follow = F.nll_loss(
                torch.log(p_s.mean(0).clamp_min(1e-12)), logits.argmax(1), reduction="none"
            )
            loss = config.alpha * confer - config.beta * leave + config.gamma * follow
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimizer.step()
            with torch.no_grad():
                delta.clamp_(-config.epsilon, config.epsilon)
        return to_uint8((x0 + delta.detach()).clamp(0, 1))
