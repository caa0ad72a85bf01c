"""Fingerprinting against model ensembles (Lukas et al., ICLR 2021): which models a step keeps
(model dropout), and how conferrable an example is (it transfers to the source's surrogates and
not to reference models). Shared by CAE and NaturalFinger's ensemble options."""

from __future__ import annotations

import numpy as np


def dropout_subset(count: int, dropout: float, rng: np.random.Generator) -> tuple[int, ...]:
    """The models one step keeps: each with chance ``1 - dropout``, at least one (drawn)."""
    kept = np.nonzero(rng.random(count) >= dropout)[0]
    if len(kept) == 0:
        kept = rng.integers(count, size=1)
    return tuple(int(i) for i in kept)


def conferrability(
    source_labels: np.ndarray, surrogate_labels: np.ndarray, reference_labels: np.ndarray
) -> np.ndarray:
    """Per example, the share of surrogates giving the source's label times one minus the share
    of references giving it; labels ``(N,)``, ``(S, N)``, ``(R, N)`` -> ``(N,)`` in [0, 1]."""
    transfer = (surrogate_labels == source_labels).mean(0)
    return transfer * (1 - (reference_labels == source_labels).mean(0))  # type: ignore[no-any-return]
