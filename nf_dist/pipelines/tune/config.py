"""``nf-dist tune``'s config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from nf_dist.bench.selection import ModelSelection
from nf_dist.data import DataConfig
from nf_dist.distributed.engines import ShardingConfig
from nf_dist.errors import ConfigError
from nf_dist.pipelines.fingerprint import MOVED_KEYS
from nf_dist.pipelines.tune.space import ParamSpec, default_space

OBJECTIVES = ("val_aruc", "val_tpr_at_1pct_fpr")


@dataclass(frozen=True)
class TuneJobConfig:
    """``nf-dist tune`` (see the module docstring).

    Attributes:
        gan_uri: the GAN (generative methods only).
        models: the built benchmark (``models.bench_uri``) and its generation models (ids).
        validation_models: the validation suspects; empty: ``validation_fraction`` of the rest,
            stratified by (role, attack), drawn with ``split_seed``.
        method: a registered fingerprinting method; ``base`` its config (the untuned settings
            every trial starts from); ``search_space`` maps its config fields to domains.
        searcher: ``random`` (Tune's sampler), ``grid``, ``optuna`` (Bayesian, TPE; needs the
            ``optuna`` package) or ``hyperopt``.
        scheduler: ``asha`` stops trials whose intermediate objective trails (NaturalFinger
            reports every ``report_every`` steps; ``grace_reports`` reports before any stop), or
            ``fifo`` runs every trial to the end.
        metric: the objective, maximised: ``val_aruc`` or ``val_tpr_at_1pct_fpr``.
        num_samples: trials (for grid search: repeats of the grid).
        seed: seeds the search algorithm (the same config draws the same trials).
        max_concurrent_trials: at most this many at once (None: as resources allow).
        sharding: where a generative trial's model gradients are computed (the ``ray`` backend's
            actors live in the trial's placement group); ``cpus_per_trial`` is the trial's own
            bundle. ``sharding.address`` is the Ray cluster the sweep joins.
        data: the owner's clean images for baselines that start from real data.
        storage_uri, name: Tune's experiment directory is ``storage_uri/name``.
        output_uri: the results (see the module docstring).
        final_test: after the sweep, generate with the best and with the base settings and
            score both on the test suspects.
        metrics_port: serve nf-dist's Prometheus metrics on this port during the sweep.
    """

    MOVED_KEYS: ClassVar[dict[str, str]] = MOVED_KEYS

    gan_uri: str = ""
    models: ModelSelection = field(default_factory=ModelSelection)
    validation_models: tuple[str, ...] = ()
    validation_fraction: float = 0.3
    split_seed: int = 0
    method: str = "naturalfinger"
    base: dict[str, Any] = field(default_factory=dict)
    search_space: dict[str, ParamSpec] = field(default_factory=default_space)
    searcher: Literal["random", "grid", "optuna", "hyperopt"] = "random"
    scheduler: Literal["asha", "fifo"] = "asha"
    metric: Literal["val_aruc", "val_tpr_at_1pct_fpr"] = "val_aruc"
    num_samples: int = 8
    seed: int = 0
    max_concurrent_trials: int | None = None
    report_every: int = 50
    grace_reports: int = 2
    sharding: ShardingConfig = field(default_factory=ShardingConfig)
    cpus_per_trial: float = 1.0
    data: DataConfig = field(default_factory=DataConfig)
    storage_uri: str = "runs/tune"
    name: str = "naturalfinger"
    output_uri: str = "runs/tune/naturalfinger-results"
    final_test: bool = True
    metrics_port: int | None = None

    def __post_init__(self) -> None:
        if not 0 < self.validation_fraction < 1:
            raise ConfigError("validation_fraction must be in (0, 1)")
        if self.num_samples < 1 or self.report_every < 1 or self.grace_reports < 1:
            raise ConfigError("num_samples, report_every and grace_reports must be at least 1")
