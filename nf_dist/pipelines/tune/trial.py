"""One Tune trial: generate with the trial's settings, report the validation objective."""

from __future__ import annotations

import logging
from typing import Any

import ray
import torch
from ray import tune

from nf_dist.config import from_dict
from nf_dist.data import load_splits
from nf_dist.errors import ConfigError, FingerprintError
from nf_dist.fingerprint.fingerprint_set import FingerprintSet, save_fingerprint_set
from nf_dist.fingerprint.methods import METHODS
from nf_dist.pipelines.experiment import generate_from_bench
from nf_dist.pipelines.fingerprint import nested_fingerprint_job, run_fingerprint
from nf_dist.pipelines.tune.config import TuneJobConfig
from nf_dist.pipelines.tune.split import ThreeWaySplit, ValidationScorer
from nf_dist.storage.uri import join

logger = logging.getLogger(__name__)


def method_settings(config: TuneJobConfig, params: dict[str, Any]) -> Any:
    """The method's typed config: ``base`` with the trial's ``params`` on top."""
    method = METHODS.get(config.method)
    return from_dict(method.config_class, {**config.base, **params}, where="base")


def _trial(params: dict[str, Any], job: TuneJobConfig, split: ThreeWaySplit) -> None:
    """One Tune trial: generate with ``params`` and report the validation objective."""
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

    bundles: list[dict[str, float]] = [{"CPU": job.cpus_per_trial}]
    if job.method == "naturalfinger" and job.engine == "ray":
        shard: dict[str, float] = {"CPU": job.cpus_per_shard}
        if job.gpus_per_shard:
            shard["GPU"] = job.gpus_per_shard
        bundles += [dict(shard) for _ in range(job.num_shards)]
    return tune.PlacementGroupFactory(bundles, strategy="PACK")


def _check_fits(job: TuneJobConfig, resources: Any) -> None:
    """A trial that asks for more than the cluster has would wait forever; say so instead."""
    total = ray.cluster_resources()
    for name, asked in resources.required_resources.items():
        if asked > total.get(name, 0.0) + 1e-9:
            raise ConfigError(
                f"one trial asks for {asked:g} {name} (cpus_per_trial + num_shards x per-shard "
                f"asks) but the cluster has {total.get(name, 0.0):g}; lower them"
            )
