"""One Tune trial: generate with the trial's settings, report the validation objective.

A method that ``reports_progress`` reports every ``report_every`` steps (its current state,
screened), so ASHA can stop a bad trial early; any other reports once, at the end. A generative
trial's shard actors live in the trial's placement group: bundle 0 holds the trial itself,
bundles 1..num_shards its actors.
"""

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
from nf_dist.fingerprint.methods.base import StepObserver
from nf_dist.pipelines.fingerprint import OwnerAssets, generate_set
from nf_dist.pipelines.tune.config import TuneJobConfig
from nf_dist.pipelines.tune.split import ThreeWaySplit, ValidationScorer
from nf_dist.storage.uri import join

logger = logging.getLogger(__name__)


def method_settings(config: TuneJobConfig, params: dict[str, Any]) -> Any:
    """The method's typed config: ``base`` with the trial's ``params`` on top."""
    method = METHODS.get(config.method)
    return from_dict(method.config_class, {**config.base, **params}, where="base")


def generate_with(
    job: TuneJobConfig,
    settings: Any,
    *,
    progress: bool = False,
    on_step: StepObserver | None = None,
    placement_group: Any = None,
) -> FingerprintSet:
    """The job's method with ``settings`` on the generation models (the trials' and the final
    test's one path)."""
    clean = None if METHODS.get(job.method).needs_gan else load_splits(job.data).test
    return generate_set(
        job.method,
        settings,
        OwnerAssets(job.models, job.gan_uri or None, clean),
        job.sharding,
        progress=progress,
        on_step=on_step,
        placement_group=placement_group,
    )


def run_trial(params: dict[str, Any], job: TuneJobConfig, split: ThreeWaySplit) -> None:
    """One Tune trial: generate with ``params`` and report the validation objective."""
    torch.set_num_threads(max(1, int(job.cpus_per_trial)))
    settings = method_settings(job, params)
    scorer = ValidationScorer(job.models.bench_uri or "", split.validation)
    trial_id = tune.get_context().get_trial_id() or "trial"
    output = join(job.output_uri, "trials", f"{trial_id}.parquet")
    method = METHODS.get(job.method)
    if not method.reports_progress:
        fingerprints = generate_with(job, settings)
        save_fingerprint_set(fingerprints, output)
        tune.report({**scorer.score(fingerprints), "step": 0})
        return
    total = method.horizon(settings)

    def observe(step: int, snapshot: Any) -> None:
        if (step + 1) % job.report_every == 0 or step + 1 == total:
            tune.report({**scorer.score(snapshot()), "step": step + 1})

    try:
        fingerprints = generate_with(
            job,
            settings,
            on_step=observe,
            placement_group=ray.util.get_current_placement_group(),
        )
        save_fingerprint_set(fingerprints, output)
    except FingerprintError as exc:  # the last report already scored the empty set
        logger.warning("trial %s kept no fingerprint: %s", trial_id, exc)


def trial_resources(job: TuneJobConfig) -> Any:
    """One trial's placement group: its own bundle, plus one per shard actor when a generative
    method runs on the ``ray`` backend."""
    bundles: list[dict[str, float]] = [{"CPU": job.cpus_per_trial}]
    if METHODS.get(job.method).needs_gan and job.sharding.backend == "ray":
        shard: dict[str, float] = {"CPU": job.sharding.cpus_per_shard}
        if job.sharding.gpus_per_shard:
            shard["GPU"] = job.sharding.gpus_per_shard
        bundles += [dict(shard) for _ in range(job.sharding.num_shards)]
    return tune.PlacementGroupFactory(bundles, strategy="PACK")


def check_fits(resources: Any) -> None:
    """A trial that asks for more than the cluster has would wait forever; say so instead."""
    total = ray.cluster_resources()
    for name, asked in resources.required_resources.items():
        if asked > total.get(name, 0.0) + 1e-9:
            raise ConfigError(
                f"one trial asks for {asked:g} {name} (cpus_per_trial + num_shards x per-shard "
                f"asks) but the cluster has {total.get(name, 0.0):g}; lower them"
            )
