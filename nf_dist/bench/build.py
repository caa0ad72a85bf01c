"""Build a FingerBench profile on Ray: one task per model, parents first, resumable.

The driver resolves the catalog, skips models that are already committed and verified (see
:mod:`nf_dist.bench.store`) and derived from the parent weights committed now (a row records its
parent's sha256, so a rebuilt teacher rebuilds its students; a row from before that is rebuilt
with a teacher rebuilt in the same build, and otherwise given its kept teacher's sha256), puts the
decoded data splits into the object store once, and submits a task for every model whose parent
is built. Each task trains its model with :func:`nf_dist.bench.zoo.build_model`, keeping an
epoch checkpoint that a later attempt or build resumes from (:mod:`nf_dist.bench.partial`),
writes the weights, then commits its manifest row (the quickstart builds its zoo through the
same path).
Failed attempts (an exception or a dead worker) are retried by the driver up to ``max_retries``
times, so retries show in the log and in the metrics.

Example:
    >>> build_bench(BuildConfig(profile="smoke", output_uri="runs/bench/smoke"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from typing import Any

import ray
from tqdm.auto import tqdm

from nf_dist.bench.catalog import Profile, load_profile
from nf_dist.bench.ensembles import mark_ensembles
from nf_dist.bench.floors import FloorCheck, check_floors, source_id
from nf_dist.bench.store import BenchStore, built_from_parent
from nf_dist.bench.task import build_task
from nf_dist.bench.zoo import ZooModel
from nf_dist.data.config import load_splits
from nf_dist.distributed.cluster import init_ray
from nf_dist.errors import ConfigError, NfDistError
from nf_dist.storage.uri import absolute_uri, write_bytes_atomic
from nf_dist.telemetry import metrics

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildConfig:
    """``nf-dist bench build``.

    Attributes:
        profile: a shipped profile name (``paper``, ``cpu``, ``smoke``) or a catalog YAML path.
        output_uri: a local folder or ``s3://bucket/prefix``.
        address: a Ray cluster address; None starts an embedded local Ray.
        num_cpus: CPUs of the embedded local Ray (None: all of the machine's).
        max_retries: extra attempts per model after a failure.
        only: build just these ids (and whatever of their ancestors is missing).
        metrics_port: serve Prometheus ``/metrics`` on this port (0: any free port; None: off).
        profile_overrides: merged into the profile file (e.g. ``{"data": {"cache_dir": ...}}``).
        progress: show a progress bar.
    """

    profile: str = "smoke"
    output_uri: str = "runs/bench/smoke"
    address: str | None = None
    num_cpus: int | None = None
    max_retries: int = 2
    only: tuple[str, ...] = ()
    metrics_port: int | None = None
    profile_overrides: dict[str, Any] = field(default_factory=dict)
    progress: bool = True


@dataclass
class BuildReport:
    """What a build did."""

    built: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    retries: int = 0
    wall_s: float = 0.0
    rows: list[dict[str, Any]] = field(default_factory=list)
    metrics_port: int | None = None
    floors: list[FloorCheck] = field(default_factory=list)

    @property
    def below_floor(self) -> list[FloorCheck]:
        """Built models below their accuracy floor (see :mod:`nf_dist.bench.floors`)."""
        return [check for check in self.floors if check.below]


def task_graph(profile: Profile, only: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The tasks a build would run, parents first, with their resource asks (``--dry-run``)."""
    wanted = _with_ancestors(profile, only) if only else {m.id for m in profile.all_models}
    return [
        {
            "id": m.id,
            "after": m.parent,
            "attack": m.attack,
            "arch": m.arch,
            "recipe": m.recipe,
            "num_cpus": m.num_cpus,
            "num_gpus": m.num_gpus,
        }
        for m in profile.all_models
        if m.id in wanted
    ]


def _with_ancestors(profile: Profile, only: tuple[str, ...]) -> set[str]:
    models = profile.by_id()
    unknown = [i for i in only if i not in models]
    if unknown:
        raise ConfigError(f"--only names unknown model {unknown[0]!r} in profile {profile.name}")
    wanted: set[str] = set()
    for model_id in only:
        current: str | None = model_id
        while current is not None and current not in wanted:
            wanted.add(current)
            current = models[current].parent
    return wanted


def build_bench(config: BuildConfig, profile: Profile | None = None) -> BuildReport:
    """Build every missing or corrupt model of the profile; see the module docstring.

    ``profile`` is an already-resolved profile to build instead of ``config.profile`` (the
    quickstart's zoo, which lives in its own config file).

    Raises:
        ConfigError: an invalid catalog (before anything runs).
        NfDistError: the output cannot be written, or models still fail after every retry.
    """
    started = time.perf_counter()
    if profile is None:
        profile = load_profile(config.profile, config.profile_overrides)
    profile = replace(profile, data=profile.data.absolute())
    store = BenchStore(absolute_uri(config.output_uri))
    store.check_writable()
    write_bytes_atomic(
        store.profile_uri,
        json.dumps({"name": profile.name, **profile.plans()}, indent=1).encode(),
    )
    report = BuildReport()
    if config.metrics_port is not None:
        report.metrics_port = metrics.serve_metrics(config.metrics_port)
    wanted = _with_ancestors(profile, config.only) if config.only else None
    todo = [m for m in profile.all_models if wanted is None or m.id in wanted]
    committed: dict[str, dict[str, Any]] = {}
    for model in todo:  # parents come first, so a stale parent is known before its children
        row = store.verified_row(model.id, model)
        if row is not None and not built_from_parent(row, committed):
            logger.info("%s: its parent %s changed since, will rebuild", model.id, model.parent)
            row = None
        if row is not None and model.parent is not None and row.get("parent_sha256") is None:
            # From before parents were recorded, and its parent is kept: record the parent's
            # weights now, so a build stopped after rebuilding that parent leaves this row stale.
            row = {**row, "parent_sha256": committed[model.parent]["sha256"]}
            store.commit_row(row)
        if row is not None:
            committed[model.id] = row
            report.skipped.append(model.id)
            metrics.BENCH_MODELS_SKIPPED.labels(model.attack).inc()
    pending = [m for m in todo if m.id not in committed]
    logger.info(
        "bench %s -> %s: %d models, %d already built, %d to build",
        profile.name,
        config.output_uri,
        len(todo),
        len(committed),
        len(pending),
    )
    if pending:
        _run_tasks(config, profile, store, pending, committed, report)
    report.rows = [committed[m.id] for m in todo if m.id in committed]
    # Rows of models outside this build (``--only``) still belong in the manifest.
    outside = [m for m in profile.all_models if m.id not in committed]
    others = _committed_rows(store, outside, committed, report.built)
    manifest = [*others.values(), *committed.values()]
    mark_ensembles(store, profile, manifest)
    store.write_manifest(manifest)
    benchmark = [r for r in manifest if r["section"] == "bench"]
    if any(r["id"] == source_id(profile.plan()) for r in benchmark):
        report.floors = check_floors(benchmark, profile.floors, profile.floor_exempt)
    for check in report.below_floor:
        logger.warning(
            "%s: test accuracy %.3f is below its floor %.3f (of %s); strengthen its recipe",
            check.id,
            check.test_accuracy,
            check.floor,
            check.reference,
        )
    report.wall_s = time.perf_counter() - started
    if report.failed:
        first, reason = next(iter(report.failed.items()))
        raise NfDistError(
            f"{len(report.failed)} model(s) failed after {config.max_retries} retries "
            f"(first: {first}: {reason}); re-run the same command to resume"
        )
    return report


def _committed_rows(
    store: BenchStore,
    models: list[ZooModel],
    built: dict[str, dict[str, Any]],
    rebuilt: Collection[str],
) -> dict[str, dict[str, Any]]:
    """The committed rows of ``models`` (outside this build) that still belong in the manifest:
    built from their catalog row and from the parent weights listed now (``built``: this build's
    rows, ``rebuilt`` the ids it trained). A student of a teacher rebuilt by ``--only`` is left
    out until it is rebuilt."""
    listed = dict(built)
    rows = {}
    for model in models:  # catalog order: parents first, so a stale parent is known before
        row = store.read_row(model.id)
        if row is None or not store.built_from(row, model):
            continue
        if not built_from_parent(row, listed, rebuilt):
            logger.warning(
                "%s: built from an older or missing %s; left out of the manifest until a "
                "build without --only (or with --only %s) rebuilds it",
                model.id,
                model.parent,
                model.id,
            )
            continue
        rows[model.id] = listed[model.id] = row
    return rows


def _run_tasks(
    config: BuildConfig,
    profile: Profile,
    store: BenchStore,
    pending: list[ZooModel],
    committed: dict[str, dict[str, Any]],
    report: BuildReport,
) -> None:
    init_ray(config.address, num_cpus=config.num_cpus)
    splits_ref = ray.put(load_splits(profile.data))
    waiting = {m.id: m for m in pending}
    attempts: dict[str, int] = {}
    running: dict[ray.ObjectRef, ZooModel] = {}
    bar = tqdm(total=len(pending), desc=f"bench {profile.name}", disable=not config.progress)

    def submit_ready() -> None:
        for model_id in list(waiting):
            model = waiting[model_id]
            if model.parent is not None and model.parent not in committed:
                if model.parent in report.failed:
                    report.failed[model_id] = f"parent {model.parent} failed"
                    del waiting[model_id]
                continue
            del waiting[model_id]
            attempt = attempts.get(model_id, 0) + 1
            attempts[model_id] = attempt
            options: dict[str, Any] = {"num_cpus": model.num_cpus, "name": f"build:{model_id}"}
            if model.num_gpus > 0:
                options["num_gpus"] = model.num_gpus
            ref = build_task.options(**options).remote(model, splits_ref, store.uri, attempt)
            running[ref] = model

    submit_ready()
    while running:
        done, _ = ray.wait(list(running), num_returns=1)
        ref = done[0]
        model = running.pop(ref)
        try:
            row = ray.get(ref)
        except (ray.exceptions.RayError, NfDistError) as exc:
            reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:300]}"
            if attempts[model.id] <= config.max_retries:
                logger.warning(
                    "%s: attempt %d failed (%s); retrying", model.id, attempts[model.id], reason
                )
                report.retries += 1
                metrics.BENCH_MODELS_RETRIED.labels(model.attack).inc()
                waiting[model.id] = model
            else:
                logger.error(
                    "%s: failed after %d attempts: %s", model.id, attempts[model.id], reason
                )
                report.failed[model.id] = reason
                metrics.BENCH_MODELS_FAILED.labels(model.attack).inc()
                bar.update(1)
        else:
            committed[model.id] = row
            report.built.append(model.id)
            metrics.BENCH_MODELS_BUILT.labels(model.attack).inc()
            metrics.BENCH_MODEL_SECONDS.labels(model.attack).observe(row["wall_s"])
            bar.update(1)
            logger.info(
                "[%d/%d] %s (%s %s): test acc %.3f, %.1fs, attempt %d",
                len(report.built),
                len(pending),
                model.id,
                model.attack,
                model.arch,
                row["test_accuracy"],
                row["wall_s"],
                row["attempt"],
            )
        submit_ready()
    bar.close()
    for model_id in waiting:
        report.failed.setdefault(model_id, "never scheduled")
