"""Fingerprint-verification metrics: matching rate, margins, ARUC (and a bound on it from the mean
rates), ROC AUC, TPR at fixed FPR.

Convention used everywhere: a suspect is judged *positive* (stolen) at threshold ``t`` when its
matching rate is ``>= t``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

ArrayLike = Sequence[float] | np.ndarray


def matching_rate(predicted: ArrayLike, expected: ArrayLike) -> float:
    """Fraction of fingerprints whose predicted label equals the expected label."""
    predicted, expected = np.asarray(predicted), np.asarray(expected)
    if predicted.shape != expected.shape or predicted.ndim != 1:
        raise ValueError(f"label arrays differ in shape: {predicted.shape} vs {expected.shape}")
    if len(expected) == 0:
        raise ValueError("matching rate of an empty fingerprint set is undefined")
    return float((predicted == expected).mean())


def _rates(values: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or len(array) == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of matching rates")
    if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
        raise ValueError(f"{name} must lie in [0, 1]")
    return array


def robustness(positive_rates: ArrayLike, threshold: float) -> float:
    """R(t): share of positive suspects with matching rate ``>= t`` (the TPR)."""
    return float((_rates(positive_rates, "positive_rates") >= threshold).mean())


def uniqueness(negative_rates: ArrayLike, threshold: float) -> float:
    """U(t): share of negative suspects with matching rate ``< t`` (the TNR)."""
    return float((_rates(negative_rates, "negative_rates") < threshold).mean())


def aruc(positive_rates: ArrayLike, negative_rates: ArrayLike) -> float:
    """Area under the robustness-uniqueness curve (IPGuard), integrated exactly.

    ARUC = integral over t in [0, 1] of min(R(t), U(t)) dt. R and U are step functions whose steps
    sit at the observed rates, so the integral is a finite sum over the intervals between them.

    Example:
        >>> aruc([1.0, 0.9], [0.1, 0.2])
        0.8
    """
    pos = _rates(positive_rates, "positive_rates")
    neg = _rates(negative_rates, "negative_rates")
    points = np.unique(np.concatenate([[0.0, 1.0], pos, neg]))
    total = 0.0
    for low, high in zip(points[:-1], points[1:]):
        middle = (low + high) / 2  # R and U are constant on the open interval (low, high)
        total += (high - low) * min((pos >= middle).mean(), (neg < middle).mean())
    return float(total)


def aruc_bound(positive_rates: ArrayLike, negative_rates: ArrayLike) -> float:
    """An upper bound on ARUC from the mean rates alone: min(mean positive rate, 1 - mean
    negative rate), since the integral of R(t) over [0, 1] is the positives' mean rate and that
    of U(t) is one minus the negatives' (so ARUC >= 0.9 needs both means on the right side of
    0.9 and 0.1).

    Example:
        >>> aruc_bound([1.0, 0.8], [0.1, 0.3])
        0.8
    """
    pos = _rates(positive_rates, "positive_rates")
    neg = _rates(negative_rates, "negative_rates")
    return float(min(pos.mean(), 1.0 - neg.mean()))


def roc_auc(positive_rates: ArrayLike, negative_rates: ArrayLike) -> float:
    """Probability that a positive suspect outscores a negative one (ties count one half)."""
    pos = _rates(positive_rates, "positive_rates")[:, None]
    neg = _rates(negative_rates, "negative_rates")[None, :]
    return float((pos > neg).mean() + 0.5 * (pos == neg).mean())


def tpr_at_fpr(positive_rates: ArrayLike, negative_rates: ArrayLike, max_fpr: float) -> float:
    """The best TPR over thresholds whose FPR (share of negatives with rate >= t) <= max_fpr."""
    pos = _rates(positive_rates, "positive_rates")
    neg = _rates(negative_rates, "negative_rates")
    best = 0.0
    for threshold in np.concatenate([np.unique(np.concatenate([pos, neg])), [np.inf]]):
        if (neg >= threshold).mean() <= max_fpr:
            best = max(best, float((pos >= threshold).mean()))
    return best


def margin(positive_rate: float, negative_rate: float) -> float:
    """Matching-rate margin: a positive model's rate minus its mirror negative's."""
    return float(positive_rate) - float(negative_rate)


def perfect_separation_width(positive_rates: ArrayLike, negative_rates: ArrayLike) -> float:
    """Width of the widest threshold range with TPR = TNR = 1 (0 when none exists).

    With "positive when rate >= t", every t in (max negative, min positive] separates perfectly.
    """
    pos, neg = _rates(positive_rates, "positive"), _rates(negative_rates, "negative")
    return max(0.0, float(pos.min() - neg.max()))


def bootstrap_ci(
    positive_rates: ArrayLike,
    negative_rates: ArrayLike,
    metric: Callable[[np.ndarray, np.ndarray], float] | None = None,
    *,
    num_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric`` (default ARUC), resampling each role."""
    pos, neg = _rates(positive_rates, "positive"), _rates(negative_rates, "negative")
    metric = metric or aruc
    rng = np.random.default_rng(seed)
    values = [
        metric(rng.choice(pos, len(pos)), rng.choice(neg, len(neg))) for _ in range(num_resamples)
    ]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def summarize(positive_rates: ArrayLike, negative_rates: ArrayLike) -> dict[str, float]:
    """All scalar metrics for one set of positive and negative suspects."""
    return {
        "aruc": aruc(positive_rates, negative_rates),
        "aruc_bound": aruc_bound(positive_rates, negative_rates),
        "roc_auc": roc_auc(positive_rates, negative_rates),
        "tpr_at_1pct_fpr": tpr_at_fpr(positive_rates, negative_rates, 0.01),
        "tpr_at_5pct_fpr": tpr_at_fpr(positive_rates, negative_rates, 0.05),
        "perfect_separation_width": perfect_separation_width(positive_rates, negative_rates),
        "num_positive": float(len(positive_rates)),
        "num_negative": float(len(negative_rates)),
    }
