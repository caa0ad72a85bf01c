"""A decision with a number on it: the p-value of a suspect's matches under "independent".

**The null.** An independent model agrees with a fingerprint's expected label now and then (it
shares the task, and some of the source's habits). How often varies from model to model, so the
null is a beta-binomial: an independent model's agreement rate ``R ~ Beta(a, b)``, and its number
of matches on ``n`` fingerprints ``K | R ~ Binomial(n, R)``. ``(a, b)`` are fitted by the method
of moments to the matching rates of independent models the owner holds (the generation negatives
and any held-out independents): the calibration set.

**Conservative, by construction.** With a handful of calibration models on a finite set the
fitted mean is uncertain; the null's mean is the larger of two one-sided 95% upper bounds: Student
t over the calibration models' rates, and Clopper-Pearson over all their answers pooled (which
keeps a calibration that never matched from claiming a zero rate). The fitted dispersion is kept,
and never taken below a floor, so a few lucky calibration models cannot make the test liberal.
A suspect is judged stolen at false-positive rate ``alpha`` when ``p = P(K >= k) <= alpha``.

**Sequential.** Queries go out in the set's order, ``batch`` at a time: ``L = ceil(n / batch)``
looks. At look ``j`` (``m_j`` queries, ``k_j`` matches) the prefix is tested on its own,
``p_j = P(K_{m_j} >= k_j)``, and the run stops "stolen" when ``L * p_j <= alpha`` (Bonferroni
over the looks, so the false-positive rate stays at most ``alpha`` whichever look stops), or
"independent" once no later look could reject even if every further answer matched. The reported
p-value is the adjusted ``min_j(L * p_j)``. A strongly matching suspect is decided in a few
batches; a full, one-look run is the plain test above.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from nf_dist.errors import ConfigError

#: Student t quantiles (one-sided 95%) by degrees of freedom; beyond 30 the normal's 1.645.
_T95 = {
    1: 6.314,
    2: 2.920,
    3: 2.353,
    4: 2.132,
    5: 2.015,
    6: 1.943,
    7: 1.895,
    8: 1.860,
    9: 1.833,
    10: 1.812,
    12: 1.782,
    15: 1.753,
    20: 1.725,
    25: 1.708,
    30: 1.697,
}
#: The smallest between-model variance of agreement rates the null may assume (a spread of
#: about 0.03 in the rates): a calibration set that happens to agree tightly is not trusted.
MIN_VARIANCE = 1e-3


def _t95(df: int) -> float:
    if df < 1:
        raise ConfigError("calibrating the null needs at least two independent models")
    below = [d for d in _T95 if d <= df]
    return 1.645 if df > 30 else _T95[max(below)]


@dataclass(frozen=True)
class NullModel:
    """Beta(a, b) over independent models' agreement rates (see the module docstring)."""

    a: float
    b: float
    calibration_mean: float
    calibration_models: int

    @property
    def mean(self) -> float:
        return self.a / (self.a + self.b)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean": self.mean}


def _pooled_upper(rates: np.ndarray, num_fingerprints: int) -> float:
    """One-sided 95% Clopper-Pearson upper bound of the pooled agreement rate."""
    trials = len(rates) * num_fingerprints
    successes = int(round(float(rates.sum()) * num_fingerprints))
    if successes >= trials:
        return 1.0
    # Upper bound p solves P(Binomial(trials, p) <= successes) = 0.05; bisection on the CDF.
    low, high = successes / trials, 1.0
    for _ in range(60):
        middle = (low + high) / 2
        k = np.arange(successes + 1)
        lgamma = np.vectorize(math.lgamma)
        log_pmf = (
            math.lgamma(trials + 1)
            - lgamma(k + 1)
            - lgamma(trials - k + 1)
            + k * math.log(middle)
            + (trials - k) * math.log1p(-middle)
        )
        if np.exp(log_pmf).sum() > 0.05:
            low = middle
        else:
            high = middle
    return high


def fit_null(rates: list[float] | np.ndarray, num_fingerprints: int) -> NullModel:
    """The conservative null from independent models' matching rates on a set of
    ``num_fingerprints``.

    Raises:
        ConfigError: fewer than two calibration models, or rates outside [0, 1].
    """
    values = np.asarray(rates, dtype=np.float64)
    if values.ndim != 1 or len(values) < 2:
        raise ConfigError(
            "calibrating the null needs the matching rates of at least two independent models"
        )
    if values.min() < 0 or values.max() > 1:
        raise ConfigError("calibration matching rates must lie in [0, 1]")
    count = len(values)
    mean = float(values.mean())
    spread = float(values.std(ddof=1))
    upper = mean + _t95(count - 1) * spread / math.sqrt(count)
    upper = min(max(upper, _pooled_upper(values, num_fingerprints), 1e-3), 0.999)
    # The floor stays below m (1 - m) / 4 so that it never makes the Beta U-shaped by itself.
    variance = max(spread**2, min(MIN_VARIANCE, upper * (1 - upper) / 4))
    variance = min(variance, upper * (1 - upper) * 0.999)  # a Beta needs var < m (1 - m)
    concentration = upper * (1 - upper) / variance - 1
    return NullModel(upper * concentration, (1 - upper) * concentration, mean, count)


def _log_pmf(k: np.ndarray, n: int, a: float, b: float) -> np.ndarray:
    """log P(K = k) of the beta-binomial, from log-gamma functions (k an int array)."""
    lgamma = np.vectorize(math.lgamma)
    choose = lgamma(n + 1) - lgamma(k + 1) - lgamma(n - k + 1)
    beta = lgamma(k + a) + lgamma(n - k + b) - lgamma(n + a + b)
    return choose + beta - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))


def p_value(matches: int, n: int, null: NullModel) -> float:
    """P(K >= matches) for ``n`` fingerprints under the null."""
    if not 0 <= matches <= n:
        raise ValueError(f"matches must be in [0, {n}], got {matches}")
    tail = _log_pmf(np.arange(matches, n + 1), n, null.a, null.b)
    top = tail.max()
    return float(min(1.0, math.exp(top) * np.exp(tail - top).sum()))


@dataclass(frozen=True)
class Decision:
    """A suspect's verdict with its numbers.

    Attributes:
        stolen: the verdict at ``alpha`` (None: undecided, only while querying).
        p_value: under the null (sequential: adjusted for the looks taken, see the module
            docstring).
        matches, queries: fingerprints matched, and asked, so far.
        num_fingerprints: the set's size.
        alpha: the chosen false-positive rate.
    """

    stolen: bool | None
    p_value: float
    matches: int
    queries: int
    num_fingerprints: int
    alpha: float

    @property
    def matching_rate(self) -> float:
        return self.matches / max(self.queries, 1)


def decide(matches: int, n: int, null: NullModel, alpha: float) -> Decision:
    """The one-look test on a whole set of ``n`` fingerprints."""
    _check_alpha(alpha)
    p = p_value(matches, n, null)
    return Decision(p <= alpha, p, matches, n, n, alpha)


class SequentialTest:
    """Looks every ``batch`` queries at a set of ``n`` (see the module docstring)."""

    def __init__(self, n: int, null: NullModel, alpha: float, batch: int) -> None:
        _check_alpha(alpha)
        if batch < 1 or n < 1:
            raise ConfigError("a sequential test needs batch >= 1 and at least one fingerprint")
        self.n, self.null, self.alpha, self.batch = n, null, alpha, batch
        self.looks = math.ceil(n / batch)
        self.adjusted = 1.0

    def look_sizes(self) -> list[int]:
        """Queries answered at each look: batch, 2 batch, ..., n."""
        return [min(self.batch * (j + 1), self.n) for j in range(self.looks)]

    def update(self, matches: int, queries: int) -> Decision:
        """The verdict after ``queries`` answers (a look size) with ``matches`` matched."""
        self.adjusted = min(self.adjusted, self.looks * p_value(matches, queries, self.null))
        p = min(1.0, self.adjusted)
        if p <= self.alpha:
            return Decision(True, p, matches, queries, self.n, self.alpha)
        later = [m for m in self.look_sizes() if m > queries]
        reachable = any(
            self.looks * p_value(matches + m - queries, m, self.null) <= self.alpha for m in later
        )
        if not reachable:
            return Decision(False, p, matches, queries, self.n, self.alpha)
        return Decision(None, p, matches, queries, self.n, self.alpha)


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ConfigError(f"the false-positive rate must be in (0, 1), got {alpha}")
