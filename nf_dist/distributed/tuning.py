"""Ray Tune sweeps of a fingerprinting method's hyperparameters, scored on validation models.

The benchmark's models are split three ways and the split is written beside the results:

- **generation**: the owner's white-box models (``positives``/``negatives``) that generate and
  screen every trial's fingerprints;
- **validation**: suspects that score the trials (``validation_models``, or a stratified share of
  the rest by role and attack, ``validation_fraction``, from ``split_seed``);
- **test**: every other suspect; the tuned configuration is scored on them once, after the sweep,
  beside the untuned base configuration (the paper's settings by default).

Each trial is one generation. NaturalFinger trials report the validation objective every
``report_every`` optimisation steps (the current latents, screened), so ASHA stops bad trials
early; a trial of a baseline reports once. With ``engine: ray`` a trial's shard actors live in
the trial's placement group: bundle 0 holds the trial itself, bundles 1..num_shards its actors.

Results under ``output_uri``: ``split.json``, ``trials.parquet`` (one row per trial: its
hyperparameters, last and best objective, reports, status), ``best_fingerprint.yaml`` (a
``nf-dist fingerprint`` config, as it is) or ``best_config.yaml`` for a baseline (an experiment
``sets`` entry), ``test/`` (the evaluation of the tuned and base sets on the test suspects),
``summary.json`` and ``report.md`` with objective-against-hyperparameter plots. Tune's own
experiment directory is ``storage_uri/name`` (local or ``s3://``); running the same config again
restores it (``Tuner.restore``) and finishes what a crash left.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np

from nf_dist.bench import load
from nf_dist.bench.store import BenchStore
from nf_dist.config import dump_yaml, from_dict, to_dict
from nf_dist.data import DataConfig
from nf_dist.errors import ConfigError, FingerprintError
from nf_dist.fingerprint.fingerprint_set import FingerprintSet, save_fingerprint_set
from nf_dist.fingerprint.methods import METHODS
from nf_dist.jobs import nested_fingerprint_job, run_fingerprint
from nf_dist.scoring import matching_rate, summarize
from nf_dist.storage.uri import absolute_uri, is_remote, join, write_bytes_atomic

logger = logging.getLogger(__name__)

OBJECTIVES = ("val_aruc", "val_tpr_at_1pct_fpr")


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
        from ray import tune

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


@dataclass(frozen=True)
class TuneJobConfig:
    """``nf-dist tune`` (see the module docstring).

    Attributes:
        bench_uri, gan_uri: the built benchmark and the GAN (the GAN only for generative methods).
        positives, negatives: generation models (benchmark ids).
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
        engine, num_shards, cpus_per_shard, gpus_per_shard: the NaturalFinger engine of each
            trial; ``cpus_per_trial`` is the trial's own bundle.
        data: the owner's clean images for baselines that start from real data.
        storage_uri, name: Tune's experiment directory is ``storage_uri/name``.
        output_uri: the results (see the module docstring).
        final_test: after the sweep, generate with the best and with the base settings and
            score both on the test suspects.
        address: Ray cluster address (None: ``RAY_ADDRESS`` or an embedded local Ray).
        metrics_port: serve nf-dist's Prometheus metrics on this port during the sweep.
    """

    bench_uri: str = ""
    gan_uri: str = ""
    positives: tuple[str, ...] = ()
    negatives: tuple[str, ...] = ()
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
    engine: Literal["local", "ray"] = "local"
    num_shards: int = 2
    cpus_per_trial: float = 1.0
    cpus_per_shard: float = 1.0
    gpus_per_shard: float = 0.0
    data: DataConfig = field(default_factory=DataConfig)
    storage_uri: str = "runs/tune"
    name: str = "naturalfinger"
    output_uri: str = "runs/tune/naturalfinger-results"
    final_test: bool = True
    address: str | None = None
    metrics_port: int | None = None

    def __post_init__(self) -> None:
        if not 0 < self.validation_fraction < 1:
            raise ConfigError("validation_fraction must be in (0, 1)")
        if self.num_samples < 1 or self.report_every < 1 or self.grace_reports < 1:
            raise ConfigError("num_samples, report_every and grace_reports must be at least 1")


@dataclass(frozen=True)
class ThreeWaySplit:
    """Benchmark ids by use; disjoint, and together every model of the benchmark."""

    generation: tuple[str, ...]
    validation: tuple[str, ...]
    test: tuple[str, ...]


def three_way_split(rows: list[dict[str, Any]], config: TuneJobConfig) -> ThreeWaySplit:
    """Split the benchmark's manifest rows (see :class:`ThreeWaySplit`).

    Raises:
        ConfigError: unknown ids, overlaps, or a validation set without both roles.
    """
    by_id = {row["id"]: row for row in rows}
    generation = (*config.positives, *config.negatives)
    named = (*generation, *config.validation_models)
    unknown = [i for i in named if i not in by_id]
    if unknown:
        raise ConfigError(f"{config.bench_uri} has no model {unknown[0]!r}; see its manifest")
    if len(set(named)) != len(named):
        raise ConfigError("positives, negatives and validation_models must not share a model")
    rest = [i for i in by_id if i not in generation]
    if config.validation_models:
        validation = list(config.validation_models)
    else:
        strata: dict[tuple[str, str], list[str]] = defaultdict(list)
        for model_id in sorted(rest):
            strata[(by_id[model_id]["role"], by_id[model_id]["attack"])].append(model_id)
        rng = np.random.default_rng(config.split_seed)
        validation = []
        for key in sorted(strata):
            members = strata[key]
            count = int(round(config.validation_fraction * len(members)))
            validation += [members[j] for j in sorted(rng.permutation(len(members))[:count])]
    roles = {by_id[i]["role"] for i in validation}
    if roles != {"positive", "negative"}:
        raise ConfigError(
            "the validation models need positive and negative suspects; name validation_models "
            "or raise validation_fraction"
        )
    test = [i for i in rest if i not in set(validation)]
    return ThreeWaySplit(tuple(generation), tuple(sorted(validation)), tuple(sorted(test)))


class ValidationScorer:
    """Label-only matching rates of the validation suspects, summarised as the objective."""

    def __init__(self, bench_uri: str, ids: tuple[str, ...]) -> None:
        from nf_dist.models.checkpoint import load_classifier

        store, roles = (
            BenchStore(bench_uri),
            {r["id"]: r["role"] for r in load(bench_uri).manifest.to_pylist()},
        )
        self.models = [(roles[i], load_classifier(store.model_stem(i))[0]) for i in ids]

    def score(self, fingerprints: FingerprintSet) -> dict[str, float]:
        """``val_aruc``, ``val_tpr_at_1pct_fpr`` and friends; an empty set scores 0."""
        from nf_dist.models.inference import predict

        if len(fingerprints) == 0:
            return {"val_aruc": 0.0, "val_tpr_at_1pct_fpr": 0.0, "num_fingerprints": 0}
        inputs = fingerprints.inputs()
        rates: dict[str, list[float]] = {"positive": [], "negative": []}
        for role, model in self.models:
            rates[role].append(matching_rate(predict(model, inputs), fingerprints.y_orig))
        metrics = summarize(rates["positive"], rates["negative"])
        return {
            **{f"val_{k}": v for k, v in metrics.items() if not k.startswith("num_")},
            "num_fingerprints": len(fingerprints),
        }


def method_settings(config: TuneJobConfig, params: dict[str, Any]) -> Any:
    """The method's typed config: ``base`` with the trial's ``params`` on top."""
    method = METHODS.get(config.method)
    return from_dict(method.config_class, {**config.base, **params}, where="base")


def _trial(params: dict[str, Any], job: TuneJobConfig, split: ThreeWaySplit) -> None:
    """One Tune trial: generate with ``params`` and report the validation objective."""
    import ray
    import torch
    from ray import tune

    torch.set_num_threads(max(1, int(job.cpus_per_trial)))
    settings = method_settings(job, params)
    scorer = ValidationScorer(job.bench_uri, split.validation)
    trial_id = tune.get_context().get_trial_id() or "trial"
    output = join(job.output_uri, "trials", f"{trial_id}.parquet")
    if job.method != "naturalfinger":
        fingerprints = _generate_baseline(job, settings, progress=False)
        save_fingerprint_set(fingerprints, output)
        tune.report({**scorer.score(fingerprints), "step": 0})
        return
    total = settings.steps

    def observe(step: int, snapshot: Any) -> None:
        if (step + 1) % job.report_every == 0 or step + 1 == total:
            tune.report({**scorer.score(snapshot()), "step": step + 1})

    try:
        run_fingerprint(
            nested_fingerprint_job(job, output, job.gan_uri, settings),
            progress=False,
            on_step=observe,
            placement_group=ray.util.get_current_placement_group(),
        )
    except FingerprintError as exc:  # the last report already scored the empty set
        logger.warning("trial %s kept no fingerprint: %s", trial_id, exc)


def _generate_baseline(job: TuneJobConfig, settings: Any, progress: bool) -> FingerprintSet:
    from nf_dist.data import load_splits
    from nf_dist.experiment import generate_from_bench

    return generate_from_bench(
        job.method,
        settings,
        bench_uri=job.bench_uri,
        positives=job.positives,
        negatives=job.negatives,
        clean=load_splits(job.data, with_query=False).test,
        gan_uri=job.gan_uri or None,
        progress=progress,
    )


def _resources(job: TuneJobConfig) -> Any:
    from ray import tune

    bundles: list[dict[str, float]] = [{"CPU": job.cpus_per_trial}]
    if job.method == "naturalfinger" and job.engine == "ray":
        shard: dict[str, float] = {"CPU": job.cpus_per_shard}
        if job.gpus_per_shard:
            shard["GPU"] = job.gpus_per_shard
        bundles += [dict(shard) for _ in range(job.num_shards)]
    return tune.PlacementGroupFactory(bundles, strategy="PACK")


def _check_fits(job: TuneJobConfig, resources: Any) -> None:
    """A trial that asks for more than the cluster has would wait forever; say so instead."""
    import ray

    total = ray.cluster_resources()
    for name, asked in resources.required_resources.items():
        if asked > total.get(name, 0.0) + 1e-9:
            raise ConfigError(
                f"one trial asks for {asked:g} {name} (cpus_per_trial + num_shards x per-shard "
                f"asks) but the cluster has {total.get(name, 0.0):g}; lower them"
            )


def _searcher(job: TuneJobConfig) -> Any:
    """The search algorithm, seeded with ``job.seed`` so a sweep's trials are reproducible."""
    if job.searcher in ("random", "grid"):
        from ray.tune.search.basic_variant import BasicVariantGenerator

        return BasicVariantGenerator(random_state=job.seed)
    try:
        if job.searcher == "optuna":
            from ray.tune.search.optuna import OptunaSearch

            return OptunaSearch(seed=job.seed)
        from ray.tune.search.hyperopt import HyperOptSearch

        return HyperOptSearch(random_state_seed=job.seed)
    except (ImportError, AssertionError) as exc:
        raise ConfigError(
            f"searcher {job.searcher!r} needs its package: pip install {job.searcher}"
        ) from exc


def _storage(job: TuneJobConfig) -> tuple[str, Any]:
    """Tune's storage path and filesystem: local, or s3 through the same fsspec (and endpoint)
    the rest of nf-dist uses."""
    if not is_remote(job.storage_uri):
        return absolute_uri(job.storage_uri), None
    import fsspec
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    fs, path = fsspec.core.url_to_fs(job.storage_uri)
    return path, PyFileSystem(FSSpecHandler(fs))


def run_tune(config: TuneJobConfig, *, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the sweep, export the best config, score it on the test suspects.

    Returns the summary written to ``summary.json``.
    """
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from nf_dist.distributed.cluster import init_ray

    fields = set(to_dict(method_settings(config, {})))  # also checks the base config
    unknown = [name for name in config.search_space if name not in fields]
    if unknown:
        raise ConfigError(
            f"search_space.{unknown[0]} is not a setting of {config.method}; its settings are "
            f"{', '.join(sorted(fields))}"
        )
    if config.method == "naturalfinger" and not config.gan_uri:
        raise ConfigError("tuning naturalfinger needs gan_uri")
    # Trials run in their own working directories: every local path must be absolute.
    config = replace(
        config,
        bench_uri=absolute_uri(config.bench_uri),
        gan_uri=absolute_uri(config.gan_uri) if config.gan_uri else "",
        output_uri=absolute_uri(config.output_uri),
        data=config.data.absolute(),
    )
    started = time.perf_counter()
    split = three_way_split(load(config.bench_uri).manifest.to_pylist(), config)
    write_bytes_atomic(
        join(config.output_uri, "split.json"), json.dumps(asdict(split), indent=1).encode()
    )
    logger.info(
        "split: %d generation, %d validation, %d test models",
        len(split.generation),
        len(split.validation),
        len(split.test),
    )
    init_ray(config.address)
    if config.metrics_port is not None:
        from nf_dist.telemetry.metrics import serve_metrics

        serve_metrics(config.metrics_port)
    resources = _resources(config)
    _check_fits(config, resources)
    trainable = tune.with_resources(
        tune.with_parameters(_trial, job=config, split=split), resources
    )
    steps = int(getattr(method_settings(config, {}), "steps", 1))
    if "steps" in config.search_space:  # the longest trial sets the schedule's horizon
        spec = config.search_space["steps"]
        steps = int(max(spec.values) if spec.values else (spec.high or steps))
    reports = max(1, -(-steps // config.report_every)) if config.method == "naturalfinger" else 1
    scheduler = (
        ASHAScheduler(
            time_attr="training_iteration",
            max_t=reports,
            grace_period=min(config.grace_reports, reports),
        )
        if config.scheduler == "asha"
        else FIFOScheduler()
    )
    storage_path, filesystem = _storage(config)
    experiment_path = f"{storage_path.rstrip('/')}/{config.name}"
    if tune.Tuner.can_restore(experiment_path, storage_filesystem=filesystem):
        logger.info("resuming the sweep at %s", experiment_path)
        tuner = tune.Tuner.restore(
            experiment_path, trainable=trainable, resume_errored=True, storage_filesystem=filesystem
        )
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={k: v.domain(config.searcher) for k, v in config.search_space.items()},
            tune_config=tune.TuneConfig(
                metric=config.metric,
                mode="max",
                num_samples=config.num_samples,
                search_alg=_searcher(config),
                scheduler=scheduler,
                max_concurrent_trials=config.max_concurrent_trials,
            ),
            run_config=tune.RunConfig(
                name=config.name,
                storage_path=storage_path,
                storage_filesystem=filesystem,
                callbacks=[_MetricsCallback(config.metric)],
                verbose=1 if progress else 0,
            ),
        )
    results = tuner.fit()
    trials = _trial_rows(results, config)
    _write_trials(join(config.output_uri, "trials.parquet"), trials)
    finished = [t for t in trials if t["last_objective"] is not None]
    if not finished:
        raise FingerprintError(f"no trial reported {config.metric}; see {experiment_path}")
    best = max(finished, key=lambda t: t["last_objective"])
    best_params = {k: best[f"param_{k}"] for k in config.search_space}
    tuned = method_settings(config, best_params)
    summary: dict[str, Any] = {
        "method": config.method,
        "metric": config.metric,
        "best_params": best_params,
        "best_validation_objective": best["last_objective"],
        "base": to_dict(method_settings(config, {})),
        "num_trials": len(trials),
        "split": asdict(split),
        "experiment_path": experiment_path,
        "sweep_wall_s": round(time.perf_counter() - started, 1),
    }
    summary["best_config_uri"] = _export_best(config, tuned)
    if config.final_test:
        summary["test"] = _score_on_test(config, split, tuned, progress)
    summary["wall_s"] = round(time.perf_counter() - started, 1)
    write_bytes_atomic(
        join(config.output_uri, "summary.json"), json.dumps(summary, indent=2).encode()
    )
    if not is_remote(config.output_uri):
        from nf_dist.report import write_tune_report

        write_tune_report(config.output_uri, trials, summary, list(config.search_space))
    return summary


def _export_best(config: TuneJobConfig, tuned: Any) -> str:
    """The best settings as a YAML the matching command accepts as it is."""
    if config.method == "naturalfinger":
        uri = join(config.output_uri, "best_fingerprint.yaml")
        job = nested_fingerprint_job(
            config, join(config.output_uri, "best_fingerprint.parquet"), config.gan_uri, tuned
        )
        write_bytes_atomic(uri, dump_yaml(job).encode())
    else:
        uri = join(config.output_uri, "best_config.yaml")
        entry = {"method": config.method, "config": to_dict(tuned)}
        write_bytes_atomic(uri, dump_yaml({f"{config.method}-tuned": entry}).encode())
    return uri


def _score_on_test(
    config: TuneJobConfig, split: ThreeWaySplit, tuned: Any, progress: bool
) -> dict[str, Any]:
    """Generate with the tuned and the base settings; evaluate both on the test suspects only."""
    from nf_dist.evaluate import EvaluateConfig, evaluate

    sets = {}
    for label, settings in (("tuned", tuned), ("base", method_settings(config, {}))):
        uri = join(config.output_uri, "test", f"{label}.parquet")
        try:
            if config.method == "naturalfinger":
                job = nested_fingerprint_job(config, uri, config.gan_uri, settings)
                run_fingerprint(job, progress=progress)
            else:
                save_fingerprint_set(_generate_baseline(config, settings, progress), uri)
            sets[label] = uri
        except FingerprintError as exc:
            logger.warning("the %s settings kept no fingerprint: %s", label, exc)
    if not sets:
        return {"failure": "neither the tuned nor the base settings kept a fingerprint"}
    metrics = evaluate(
        EvaluateConfig(
            bench_uri=config.bench_uri,
            fingerprints=sets,
            generation_models=(*split.generation, *split.validation),
            output_uri=join(config.output_uri, "test", "evaluation"),
            engine="ray",
            address=config.address,
        )
    )
    return {
        label: {
            "aruc": metrics["methods"][label]["heldout"]["aruc"],
            "tpr_at_1pct_fpr": metrics["methods"][label]["heldout"]["tpr_at_1pct_fpr"],
            "num_test_suspects": len(split.test),
        }
        for label in sets
    }


def _trial_rows(results: Any, config: TuneJobConfig) -> list[dict[str, Any]]:
    rows = []
    for result in results:
        history = result.metrics_dataframe
        objective = (
            history[config.metric].tolist()
            if history is not None and config.metric in history
            else []
        )
        metrics = result.metrics or {}
        row: dict[str, Any] = {
            "trial_id": metrics.get("trial_id") or result.path.rsplit("/", 1)[-1],
            "status": "error" if result.error else "completed",
            "reports": len(objective),
            "last_step": metrics.get("step"),
            "last_objective": objective[-1] if objective else None,
            "best_objective": max(objective) if objective else None,
            "num_fingerprints": metrics.get("num_fingerprints"),
            "val_roc_auc": metrics.get("val_roc_auc"),
            "val_tpr_at_1pct_fpr": metrics.get("val_tpr_at_1pct_fpr"),
        }
        for name in config.search_space:
            row[f"param_{name}"] = (result.config or {}).get(name)
        rows.append(row)
    return sorted(rows, key=lambda r: str(r["trial_id"]))


def _write_trials(uri: str, rows: list[dict[str, Any]]) -> None:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    write_bytes_atomic(uri, buffer.getvalue())


def _metrics_callback_base() -> type:
    from ray import tune

    return tune.Callback  # type: ignore[no-any-return]


class _MetricsCallback(_metrics_callback_base()):  # type: ignore[misc]
    """Feeds nf-dist's Prometheus metrics from the Tune driver: trials by status, the best
    objective so far."""

    def __init__(self, metric: str) -> None:
        self.metric, self.best = metric, float("-inf")

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **_: Any
    ) -> None:
        from nf_dist.telemetry.metrics import TUNE_BEST_OBJECTIVE, TUNE_REPORTS

        TUNE_REPORTS.inc()
        value = result.get(self.metric)
        if value is not None and value > self.best:
            self.best = float(value)
            TUNE_BEST_OBJECTIVE.labels(metric=self.metric).set(self.best)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **_: Any) -> None:
        from nf_dist.telemetry.metrics import TUNE_TRIALS

        TUNE_TRIALS.labels(status="completed").inc()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **_: Any) -> None:
        from nf_dist.telemetry.metrics import TUNE_TRIALS

        TUNE_TRIALS.labels(status="error").inc()


__all__ = [
    "OBJECTIVES",
    "ParamSpec",
    "ThreeWaySplit",
    "TuneJobConfig",
    "ValidationScorer",
    "default_space",
    "method_settings",
    "run_tune",
    "three_way_split",
]
