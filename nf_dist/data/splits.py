"""Deterministic stratified splits (the paper's halves A/B and fine-tune/test sets).

A split is computed from the labels and a recorded seed only, so every process that loads the same
dataset gets the same indices. Each class's indices are shuffled and spread evenly along one
"stratified order"; consecutive chunks of that order are the parts, so every part, and every prefix
of a part, has (almost exactly) the dataset's class proportions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nf_dist.errors import ConfigError


def stratified_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """A permutation of ``range(len(labels))`` whose every prefix is stratified by label."""
    rng = np.random.default_rng(seed)
    position = np.empty(len(labels), dtype=np.float64)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rng.shuffle(members)
        # Spread this class's members evenly over [0, 1): member r sits at (r + jitter) / count.
        position[members] = (np.arange(len(members)) + rng.random()) / len(members)
    return np.argsort(position, kind="stable")


def stratified_split(labels: np.ndarray, sizes: Sequence[int], seed: int) -> list[np.ndarray]:
    """Disjoint, stratified index sets of the given sizes (sorted within each part)."""
    if any(s < 0 for s in sizes) or sum(sizes) > len(labels):
        raise ConfigError(f"split sizes {list(sizes)} do not fit {len(labels)} examples")
    order = stratified_order(np.asarray(labels), seed)
    bounds = np.cumsum([0, *sizes])
    return [np.sort(order[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def paper_splits(
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    seed: int = 0,
    *,
    half_size: int | None = None,
    finetune_size: int | None = None,
    test_size: int | None = None,
) -> dict[str, np.ndarray]:
    """The paper's four parts: train halves A and B, test into fine-tune and test sets.

    Sizes default to half of each split (25,000 / 25,000 and 5,000 / 5,000 on CIFAR-10); smaller
    sizes take stratified subsets, for CPU profiles.

    Returns:
        ``{"half_a", "half_b"}`` index the training split; ``{"finetune", "test"}`` the test split.
    """
    half = len(train_labels) // 2 if half_size is None else half_size
    tune = len(test_labels) // 2 if finetune_size is None else finetune_size
    test = len(test_labels) - len(test_labels) // 2 if test_size is None else test_size
    if half * 2 > len(train_labels) or tune + test > len(test_labels):
        raise ConfigError("split sizes exceed the dataset: lower half_size/finetune_size/test_size")
    half_a, half_b = _prefixed_halves(train_labels, half, seed)
    finetune, test_set = _prefixed_halves(test_labels, None, seed + 1, (tune, test))
    return {"half_a": half_a, "half_b": half_b, "finetune": finetune, "test": test_set}


def _prefixed_halves(
    labels: np.ndarray, size: int | None, seed: int, sizes: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Split into two full halves first, then take stratified prefixes of the requested sizes.

    Taking prefixes of fixed full halves (rather than re-splitting) keeps small profiles nested in
    big ones: the CPU profile's half A is a subset of the paper profile's half A.
    """
    n = len(labels)
    first, second = stratified_split(labels, [n // 2, n - n // 2], seed)
    want = sizes if sizes is not None else (size, size)
    parts = []
    for part, count in zip((first, second), want):
        assert count is not None
        order = stratified_order(labels[part], seed + 7)
        parts.append(np.sort(part[order[:count]]))
    return parts[0], parts[1]
