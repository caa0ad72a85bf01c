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
from dataclasses import asdict, replace
from typing import Any

import fsspec
from pyarrow.fs import FSSpecHandler, PyFileSystem
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from nf_dist.bench import load
from nf_dist.config import to_dict
from nf_dist.distributed.cluster import init_ray
from nf_dist.errors import ConfigError, FingerprintError
from nf_dist.fingerprint.methods import METHODS
from nf_dist.pipelines.report import write_tune_report
from nf_dist.pipelines.tune.config import TuneJobConfig
from nf_dist.pipelines.tune.results import (
    MetricsCallback,
    export_best,
    score_on_test,
    trial_rows,
    write_trials,
)
from nf_dist.pipelines.tune.space import search_algorithm
from nf_dist.pipelines.tune.split import three_way_split
from nf_dist.pipelines.tune.trial import check_fits, method_settings, run_trial, trial_resources
from nf_dist.storage.uri import absolute_uri, is_remote, join, write_bytes_atomic
from nf_dist.telemetry.metrics import serve_metrics

logger = logging.getLogger(__name__)


def _storage(job: TuneJobConfig) -> tuple[str, Any]:
    """Tune's storage path and filesystem: local, or s3 through the same fsspec (and endpoint)
    the rest of nf-dist uses."""
    if not is_remote(job.storage_uri):
        return absolute_uri(job.storage_uri), None
    fs, path = fsspec.core.url_to_fs(job.storage_uri)
    return path, PyFileSystem(FSSpecHandler(fs))


def horizon(config: TuneJobConfig) -> int:
    """The longest trial's horizon (steps), which sets ASHA's schedule."""
    method = METHODS.get(config.method)
    steps = method.horizon(method_settings(config, {}))
    if "steps" in config.search_space:  # a searched step count: its largest value
        spec = config.search_space["steps"]
        steps = int(max(spec.values) if spec.values else (spec.high or steps))
    return steps


def run_tune(config: TuneJobConfig, *, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the sweep, export the best config, score it on the test suspects.

    Returns the summary written to ``summary.json``.
    """

    fields = set(to_dict(method_settings(config, {})))  # also checks the base config
    unknown = [name for name in config.search_space if name not in fields]
    if unknown:
        raise ConfigError(
            f"search_space.{unknown[0]} is not a setting of {config.method}; its settings are "
            f"{', '.join(sorted(fields))}"
        )
    method = METHODS.get(config.method)
    if method.needs_gan and not config.gan_uri:
        raise ConfigError(f"tuning {config.method} needs gan_uri")
    if not config.models.bench_uri:
        raise ConfigError("tuning needs models.bench_uri (a built benchmark)")
    # Trials run in their own working directories: every local path must be absolute.
    config = replace(
        config,
        models=replace(config.models, bench_uri=absolute_uri(config.models.bench_uri)),
        gan_uri=absolute_uri(config.gan_uri) if config.gan_uri else "",
        output_uri=absolute_uri(config.output_uri),
        data=config.data.absolute(),
    )
    started = time.perf_counter()
    split = three_way_split(load(config.models.bench_uri or "").manifest.to_pylist(), config)
    write_bytes_atomic(
        join(config.output_uri, "split.json"), json.dumps(asdict(split), indent=1).encode()
    )
    logger.info(
        "split: %d generation, %d validation, %d test models",
        len(split.generation),
        len(split.validation),
        len(split.test),
    )
    init_ray(config.sharding.address)
    if config.metrics_port is not None:
        serve_metrics(config.metrics_port)
    resources = trial_resources(config)
    check_fits(resources)
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, job=config, split=split), resources
    )
    reports = max(1, -(-horizon(config) // config.report_every)) if method.reports_progress else 1
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
                search_alg=search_algorithm(config.searcher, config.seed),
                scheduler=scheduler,
                max_concurrent_trials=config.max_concurrent_trials,
            ),
            run_config=tune.RunConfig(
                name=config.name,
                storage_path=storage_path,
                storage_filesystem=filesystem,
                callbacks=[MetricsCallback(config.metric)],
                verbose=1 if progress else 0,
            ),
        )
    results = tuner.fit()
    trials = trial_rows(results, config)
    write_trials(join(config.output_uri, "trials.parquet"), trials)
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
    summary["best_config_uri"] = export_best(config, tuned)
    if config.final_test:
        summary["test"] = score_on_test(config, split, tuned, progress)
    summary["wall_s"] = round(time.perf_counter() - started, 1)
    write_bytes_atomic(
        join(config.output_uri, "summary.json"), json.dumps(summary, indent=2).encode()
    )
    if not is_remote(config.output_uri):
        write_tune_report(config.output_uri, trials, summary, list(config.search_space))
    return summary
