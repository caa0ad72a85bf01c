"""The verdict's statistics: the beta-binomial null, its p-values, the one-look and sequential
tests, and their false-positive rates (simulated under the null)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nf_dist.errors import ConfigError
from nf_dist.verification.decision import NullModel, SequentialTest, decide, fit_null, p_value


def _brute_force_tail(k: int, n: int, a: float, b: float) -> float:
    """P(K >= k) of the beta-binomial by numerical integration over R ~ Beta(a, b)."""
    grid = np.linspace(1e-6, 1 - 1e-6, 200_001)
    density = grid ** (a - 1) * (1 - grid) ** (b - 1)
    density /= np.trapezoid(density, grid)
    tails = np.zeros_like(grid)
    for j in range(k, n + 1):
        tails += math.comb(n, j) * grid**j * (1 - grid) ** (n - j)
    return float(np.trapezoid(tails * density, grid))


@pytest.mark.parametrize(
    ("k", "n", "a", "b"), [(3, 10, 2.0, 8.0), (7, 20, 3.0, 5.0), (0, 5, 1.0, 1.0)]
)
def test_p_value_is_the_beta_binomial_tail(k: int, n: int, a: float, b: float) -> None:
    null = NullModel(a, b, a / (a + b), 5)
    assert p_value(k, n, null) == pytest.approx(_brute_force_tail(k, n, a, b), rel=1e-4)


def test_the_null_is_conservative() -> None:
    rates = [0.10, 0.15, 0.20, 0.12, 0.18]
    null = fit_null(rates, num_fingerprints=200)
    assert null.mean > np.mean(rates), "the mean is shifted up to an upper bound"
    # A calibration set that never matched still gets a positive null (Clopper-Pearson).
    silent = fit_null([0.0, 0.0, 0.0], num_fingerprints=50)
    assert silent.mean >= 1 - 0.05 ** (1 / 150) - 1e-9
    with pytest.raises(ConfigError, match="at least two"):
        fit_null([0.2], num_fingerprints=100)


def _simulated_false_positive_rate(test_one, null: NullModel, trials: int = 4000) -> float:  # type: ignore[no-untyped-def]
    """The share of independent models (agreement rate R ~ the null's Beta) called stolen."""
    rng = np.random.default_rng(0)
    called = 0
    for _ in range(trials):
        rate = rng.beta(null.a, null.b)
        called += bool(test_one(rng.random(100) < rate))
    return called / trials


def test_both_tests_keep_their_false_positive_rate_under_the_null() -> None:
    null = NullModel(4.0, 16.0, 0.2, 10)
    alpha = 0.05

    def one_look(answers: np.ndarray) -> bool:
        return bool(decide(int(answers.sum()), len(answers), null, alpha).stolen)

    def sequential(answers: np.ndarray) -> bool:
        test = SequentialTest(len(answers), null, alpha, batch=10)
        for size in test.look_sizes():
            decision = test.update(int(answers[:size].sum()), size)
            if decision.stolen is not None:
                return bool(decision.stolen)
        raise AssertionError("the last look decides")

    # The one-look test's size, exactly: P(K >= the smallest k it rejects) under the null.
    rejected = [k for k in range(101) if decide(k, 100, null, alpha).stolen]
    assert p_value(min(rejected), 100, null) <= alpha
    noise = 3 * math.sqrt(alpha * (1 - alpha) / 4000)  # three Monte Carlo standard errors
    for test_one in (one_look, sequential):
        assert _simulated_false_positive_rate(test_one, null) <= alpha + noise


def test_the_sequential_test_stops_early_on_clear_cases() -> None:
    null = fit_null([0.10, 0.15, 0.20, 0.12, 0.30, 0.18], num_fingerprints=200)
    copy = SequentialTest(200, null, 1e-3, batch=10)
    decision = copy.update(10, 10)
    assert decision.stolen is True and decision.queries == 10
    stranger = SequentialTest(200, null, 1e-3, batch=10)
    for size in stranger.look_sizes():
        decision = stranger.update(int(0.15 * size), size)
        if decision.stolen is not None:
            break
    assert decision.stolen is False and decision.queries < 200
