"""The search space: one hyperparameter's domain, the default space and the seeded search
algorithm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ray import tune
from ray.tune.search.basic_variant import BasicVariantGenerator

from nf_dist.errors import ConfigError


@dataclass(frozen=True)
class ParamSpec:
    """One hyperparameter's domain.

    ``kind``: ``choice`` (one of ``values`` at random), ``grid`` (every one of ``values``),
    ``uniform`` / ``loguniform`` (a float in [``low``, ``high``]), ``randint`` (an int in
    [``low``, ``high``)).
    """

    kind: Literal["choice", "grid", "uniform", "loguniform", "randint"] = "choice"
    values: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None

    def __post_init__(self) -> None:
        if self.kind in ("choice", "grid") and not self.values:
            raise ConfigError(f"a {self.kind} hyperparameter needs values: [...]")
        if self.kind in ("uniform", "loguniform", "randint"):
            if self.low is None or self.high is None or not self.low < self.high:
                raise ConfigError(f"a {self.kind} hyperparameter needs low < high")
            if self.kind == "loguniform" and self.low <= 0:
                raise ConfigError("a loguniform hyperparameter needs low > 0")

    def domain(self, searcher: str) -> Any:
        """The Tune search-space object (grid search turns every choice into a grid)."""
        if self.kind == "grid" or (self.kind == "choice" and searcher == "grid"):
            return tune.grid_search(list(self.values))
        if searcher == "grid":
            raise ConfigError(f"grid search takes grid or choice hyperparameters, not {self.kind}")
        if self.kind == "choice":
            return tune.choice(list(self.values))
        assert self.low is not None and self.high is not None
        if self.kind == "uniform":
            return tune.uniform(self.low, self.high)
        if self.kind == "loguniform":
            return tune.loguniform(self.low, self.high)
        return tune.randint(int(self.low), int(self.high))


def default_space() -> dict[str, ParamSpec]:
    """lambda, learning rate and the CW confidence k around the paper's 0.5, 0.5 and 50."""
    return {
        "lambda_d": ParamSpec("uniform", low=0.0, high=1.0),
        "lr": ParamSpec("loguniform", low=0.1, high=2.0),
        "k": ParamSpec("choice", values=(10.0, 25.0, 50.0, 100.0)),
    }


def search_algorithm(searcher: str, seed: int) -> Any:
    """The search algorithm, seeded so a sweep's trials are reproducible. Optional searchers
    import their package here, only when asked for."""
    if searcher in ("random", "grid"):
        return BasicVariantGenerator(random_state=seed)
    try:
        if searcher == "optuna":
            from ray.tune.search.optuna import OptunaSearch  # optional: the optuna package

            return OptunaSearch(seed=seed)
        from ray.tune.search.hyperopt import HyperOptSearch  # optional: the hyperopt package

        return HyperOptSearch(random_state_seed=seed)
    except (ImportError, AssertionError) as exc:
        raise ConfigError(
            f"searcher {searcher!r} needs its package: pip install {searcher}"
        ) from exc
