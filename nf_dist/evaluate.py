"""Evaluate fingerprint sets on a built benchmark: label-only queries of every suspect, on Ray.

Every suspect of the benchmark answers every fingerprint set with top-1 labels only (one Ray task
per suspect, the sets shared through the object store). The models that generated or screened the
fingerprints are named in the config and kept apart: headline metrics are on the held-out
suspects, all-model metrics beside them, and the split is written into every result.

Outputs under ``output_uri``: ``rates.parquet`` (method, suspect id, role, attack, params, arch,
use, rate), ``margins.parquet`` (per method and positive: its rate minus its mirror negative's) and
``metrics.json`` (per method and split: ARUC with a bootstrap interval, ROC AUC, TPR at 1% and 5%
FPR, the perfect-separation width; mean margin per attack; the split).
"""

from __future__ import annotations

import io
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray

from nf_dist.bench import Benchmark, load
from nf_dist.bench.store import BenchStore
from nf_dist.errors import ConfigError
from nf_dist.fingerprint.fingerprint_set import FingerprintSet, load_fingerprint_set
from nf_dist.metrics import bootstrap_ci, matching_rate, summarize
from nf_dist.storage.uri import join, write_bytes_atomic

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluateConfig:
    """``nf-dist evaluate``.

    Attributes:
        bench_uri: a built benchmark (local folder or ``s3://``).
        fingerprints: method name -> fingerprint set URI.
        generation_models: ids used to generate or screen the fingerprints (not held out).
        output_uri: where the tables and metrics go.
        engine: ``ray`` (one task per suspect) or ``local`` (this process, the twin).
        address: Ray cluster address (None: ``RAY_ADDRESS`` or an embedded local Ray).
        metrics_port: serve ``nf_eval_suspects_queried_total`` on this port (0: any free one).
        bootstrap: resamples for the ARUC interval.
        seed: bootstrap seed.
    """

    bench_uri: str = ""
    fingerprints: dict[str, str] = field(default_factory=dict)
    generation_models: tuple[str, ...] = ()
    output_uri: str = "runs/evaluate"
    engine: Literal["local", "ray"] = "ray"
    address: str | None = None
    bootstrap: int = 1000
    seed: int = 0
    metrics_port: int | None = None


def suspect_rates(model_stem: str, sets: dict[str, FingerprintSet]) -> dict[str, float]:
    """One suspect's matching rate on each set; it is only ever asked for labels."""
    from nf_dist.models.checkpoint import load_classifier
    from nf_dist.models.training import predict

    model, _ = load_classifier(model_stem)
    return {
        name: matching_rate(predict(model, fingerprints.inputs()), fingerprints.y_orig)
        for name, fingerprints in sets.items()
    }


@ray.remote(num_cpus=1)
def _suspect_task(
    model_stem: str, sets: dict[str, FingerprintSet]
) -> dict[str, float]:  # pragma: no cover - runs in a Ray worker
    import torch

    torch.set_num_threads(1)
    return suspect_rates(model_stem, sets)


def evaluate(config: EvaluateConfig) -> dict[str, Any]:
    """Query every suspect, write the tables and return the metrics (see the module docstring).

    Raises:
        ConfigError: no fingerprint sets, or generation models that are not in the benchmark.
        NfDistError: no benchmark at ``bench_uri``.
    """
    if not config.fingerprints:
        raise ConfigError("evaluate needs at least one fingerprint set (fingerprints: {name: uri})")
    bench = load(config.bench_uri)
    ids = bench.ids()
    unknown = sorted(set(config.generation_models) - set(ids))
    if unknown:
        raise ConfigError(f"generation model {unknown[0]!r} is not in {config.bench_uri}")
    sets = {name: load_fingerprint_set(uri) for name, uri in config.fingerprints.items()}
    store = BenchStore(config.bench_uri)
    stems = {i: store.model_stem(i) for i in ids}
    from nf_dist.telemetry.metrics import EVAL_SUSPECTS_QUERIED, serve_metrics

    if config.metrics_port is not None:
        serve_metrics(config.metrics_port)
    answers: dict[str, dict[str, float]] = {}
    if config.engine == "ray":
        from nf_dist.ray_utils import init_ray

        init_ray(config.address)
        shared = ray.put(sets)
        owners = {_suspect_task.remote(stems[i], shared): i for i in ids}
        pending = list(owners)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            answers[owners[done[0]]] = ray.get(done[0])
            EVAL_SUSPECTS_QUERIED.inc()
    else:
        for i in ids:
            answers[i] = suspect_rates(stems[i], sets)
            EVAL_SUSPECTS_QUERIED.inc()
    rows = _rate_rows(bench, answers, set(config.generation_models))
    metrics = _metrics(rows, bench, config)
    _write(config.output_uri, rows, metrics)
    return metrics


def _rate_rows(
    bench: Benchmark, answers: dict[str, dict[str, float]], generation: set[str]
) -> list[dict[str, Any]]:
    rows = []
    for row in bench.manifest.to_pylist():
        for method, rate in answers[row["id"]].items():
            rows.append(
                {
                    "method": method,
                    "suspect": row["id"],
                    "role": row["role"],
                    "attack": row["attack"],
                    "params": row["params"],
                    "arch": row["arch"],
                    "mirror_of": row["mirror_of"],
                    "use": "generation" if row["id"] in generation else "heldout",
                    "rate": rate,
                }
            )
    return rows


def _metrics(
    rows: list[dict[str, Any]], bench: Benchmark, config: EvaluateConfig
) -> dict[str, Any]:
    by_method: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_method[row["method"]].append(row)
    result: dict[str, Any] = {
        "bench_uri": config.bench_uri,
        "split": {
            "generation_models": sorted(config.generation_models),
            "heldout_models": sorted({r["suspect"] for r in rows} - set(config.generation_models)),
        },
        "methods": {},
    }
    for method, group in by_method.items():
        entry: dict[str, Any] = {}
        for split, members in (
            ("heldout", [r for r in group if r["use"] == "heldout"]),
            ("all", group),
        ):
            pos = [r["rate"] for r in members if r["role"] == "positive"]
            neg = [r["rate"] for r in members if r["role"] == "negative"]
            if pos and neg:
                summary = summarize(pos, neg)
                low, high = bootstrap_ci(pos, neg, num_resamples=config.bootstrap, seed=config.seed)
                entry[split] = {**summary, "aruc_ci95": [low, high]}
        entry["margins_by_attack"] = _margins(group)
        result["methods"][method] = entry
    return result


def margin_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per method and positive with a mirror negative: rate(positive) - rate(mirror)."""
    mirrors = {(r["method"], r["mirror_of"]): r for r in rows if r["mirror_of"]}
    out = []
    for row in rows:
        mirror = mirrors.get((row["method"], row["suspect"]))
        if row["role"] == "positive" and mirror is not None:
            out.append(
                {
                    "method": row["method"],
                    "suspect": row["suspect"],
                    "mirror": mirror["suspect"],
                    "attack": row["attack"],
                    "params": row["params"],
                    "arch": row["arch"],
                    "margin": row["rate"] - mirror["rate"],
                }
            )
    return out


def _margins(group: list[dict[str, Any]]) -> dict[str, float]:
    by_attack: dict[str, list[float]] = defaultdict(list)
    for row in margin_rows(group):
        by_attack[row["attack"]].append(row["margin"])
    return {attack: float(np.mean(values)) for attack, values in sorted(by_attack.items())}


def _parquet(rows: list[dict[str, Any]]) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    return sink.getvalue()


def _write(output_uri: str, rows: list[dict[str, Any]], metrics: dict[str, Any]) -> None:
    write_bytes_atomic(join(output_uri, "rates.parquet"), _parquet(rows))
    margins = margin_rows(rows)
    if margins:
        write_bytes_atomic(join(output_uri, "margins.parquet"), _parquet(margins))
    write_bytes_atomic(
        join(output_uri, "metrics.json"), json.dumps(metrics, indent=2, sort_keys=True).encode()
    )
    logger.info("wrote %s/{rates,margins}.parquet and metrics.json", output_uri)
