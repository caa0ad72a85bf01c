"""Evaluate fingerprint sets on a built benchmark: label-only queries of every suspect, on Ray.

Every suspect of the benchmark answers every fingerprint set with top-1 labels only (one Ray task
per suspect, the sets shared through the object store). The models that generated or screened the
fingerprints are named in the config and kept apart: headline metrics are on the held-out
suspects, all-model metrics beside them, and the split is written into every result.

Outputs under ``output_uri``: ``answers.parquet`` (method, suspect id, the suspect's top-1 label
for every fingerprint in the set's order), ``rates.parquet`` (method, suspect id, role, attack,
params, arch, use, rate), ``margins.parquet`` (per method and positive: its rate minus its mirror
negative's), ``budgets.parquet`` (per method, query budget B and split: the metrics and the
ARUC's bootstrap interval when only the first B fingerprints are asked, from the same answers;
B = the set's size reproduces the headline)
and ``metrics.json`` (per method and split: ARUC with a bootstrap interval, ROC AUC, TPR at 1% and
5% FPR, the perfect-separation width; mean margin per attack; the split; the budget curves).
"""

from __future__ import annotations

import io
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import torch

from nf_dist.bench import Benchmark, load
from nf_dist.distributed.cluster import init_ray
from nf_dist.errors import ConfigError
from nf_dist.fingerprint.fingerprint_set import FingerprintSet, load_fingerprint_set
from nf_dist.models.checkpoint import load_classifier
from nf_dist.models.inference import predict
from nf_dist.scoring import bootstrap_ci, matching_rate, summarize
from nf_dist.storage.uri import join, write_bytes_atomic
from nf_dist.telemetry.metrics import EVAL_SUSPECTS_QUERIED, serve_metrics

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluateConfig:
    """``nf-dist evaluate``.

    Attributes:
        bench_uri: a built benchmark (local folder or ``s3://``).
        fingerprints: method name -> fingerprint set URI.
        generation_models: ids used to generate or screen the fingerprints (not held out).
        validation_models: ids whose answers chose the settings (``nf-dist tune``'s validation
            split): scored apart as ``validation``, never in the held-out headline.
        output_uri: where the tables and metrics go.
        backend: ``ray`` (one task per suspect) or ``local`` (this process, the twin).
        address: Ray cluster address (None: ``RAY_ADDRESS`` or an embedded local Ray).
        metrics_port: serve ``nf_eval_suspects_queried_total`` on this port (0: any free one).
        bootstrap: resamples for the ARUC interval.
        seed: bootstrap seed.
        budgets: query budgets B for the budget curves (the first B fingerprints of every set;
            each must be at most the smallest set's size); the full set is always scored.
    """

    bench_uri: str = ""
    fingerprints: dict[str, str] = field(default_factory=dict)
    generation_models: tuple[str, ...] = ()
    validation_models: tuple[str, ...] = ()
    output_uri: str = "runs/evaluate"
    MOVED_KEYS: ClassVar[dict[str, str]] = {"engine": "backend"}

    backend: Literal["local", "ray"] = "ray"
    address: str | None = None
    bootstrap: int = 1000
    seed: int = 0
    metrics_port: int | None = None
    budgets: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if any(b < 1 for b in self.budgets):
            raise ConfigError(f"evaluate.budgets must be positive counts, got {list(self.budgets)}")
        both = sorted(set(self.generation_models) & set(self.validation_models))
        if both:
            raise ConfigError(
                f"evaluate.validation_models: {both[0]!r} is also a generation model; a model "
                "has one use"
            )

    def use_of(self, model_id: str) -> str:
        """``generation``, ``validation`` or ``heldout`` (the headline's suspects)."""
        if model_id in self.generation_models:
            return "generation"
        return "validation" if model_id in self.validation_models else "heldout"


@dataclass(frozen=True)
class Suspect:
    """Where a benchmark suspect's weights are and the hash its manifest records for them."""

    stem: str
    sha256: str


def suspect_answers(suspect: Suspect, sets: dict[str, FingerprintSet]) -> dict[str, np.ndarray]:
    """One suspect's top-1 label for every fingerprint of each set; it is only asked for labels
    (its weights are checked against the manifest's hash first)."""
    model, _ = load_classifier(suspect.stem, expected_sha256=suspect.sha256)
    return {name: predict(model, fingerprints.inputs()) for name, fingerprints in sets.items()}


@ray.remote(num_cpus=1)
def _suspect_task(
    suspect: Suspect, sets: dict[str, FingerprintSet]
) -> dict[str, np.ndarray]:  # pragma: no cover - runs in a Ray worker
    torch.set_num_threads(1)
    return suspect_answers(suspect, sets)


def check_budgets(budgets: tuple[int, ...], sets: dict[str, FingerprintSet]) -> None:
    """Every budget must fit every set (a budget is the first B fingerprints).

    Raises:
        ConfigError: naming the budget, the set and its size.
    """
    for name, fingerprints in sets.items():
        too_large = [b for b in budgets if b > len(fingerprints)]
        if too_large:
            raise ConfigError(
                f"evaluate.budgets: budget {too_large[0]} is larger than set {name!r} "
                f"({len(fingerprints)} fingerprints); lower the budget or make the set larger"
            )


def run_evaluate(config: EvaluateConfig) -> dict[str, Any]:
    """Query every suspect, write the tables and return the metrics (see the module docstring).

    Raises:
        ConfigError: no fingerprint sets, or generation models that are not in the benchmark.
        NfDistError: no benchmark at ``bench_uri``.
    """
    if not config.fingerprints:
        raise ConfigError("evaluate needs at least one fingerprint set (fingerprints: {name: uri})")
    bench = load(config.bench_uri)
    ids = bench.ids()  # the suspects: the benchmark section, never the generation ensembles
    unknown = sorted(
        set(config.generation_models + config.validation_models) - set(bench.ids(section=None))
    )
    if unknown:
        raise ConfigError(
            f"generation or validation model {unknown[0]!r} is not in {config.bench_uri}"
        )
    sets = {name: load_fingerprint_set(uri) for name, uri in config.fingerprints.items()}
    check_budgets(config.budgets, sets)
    suspects = {i: Suspect(bench.stem(i), bench.expected_sha256(i)) for i in ids}
    if config.metrics_port is not None:
        serve_metrics(config.metrics_port)
    answers: dict[str, dict[str, np.ndarray]] = {}
    if config.backend == "ray":
        init_ray(config.address)
        shared = ray.put(sets)
        owners = {_suspect_task.remote(suspects[i], shared): i for i in ids}
        pending = list(owners)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            answers[owners[done[0]]] = ray.get(done[0])
            EVAL_SUSPECTS_QUERIED.inc()
    else:
        for i in ids:
            answers[i] = suspect_answers(suspects[i], sets)
            EVAL_SUSPECTS_QUERIED.inc()
    rows = _rate_rows(bench, answers, sets, config)
    metrics = _metrics(rows, bench, config)
    budgets = budget_rows(bench, answers, sets, config)
    for row in budgets:
        if row["split"] == "heldout":
            entry = metrics["methods"][row["method"]].setdefault("budgets", {})
            entry[str(row["budget"])] = {
                **{k: row[k] for k in BUDGET_METRICS},
                "aruc_ci95": [row["aruc_ci95_low"], row["aruc_ci95_high"]],
            }
    _write(config.output_uri, rows, metrics, _answer_rows(answers), budgets)
    return metrics


#: The metrics of a budget curve.
BUDGET_METRICS = ("aruc", "roc_auc", "tpr_at_1pct_fpr", "tpr_at_5pct_fpr")


def budget_rows(
    bench: Benchmark,
    answers: dict[str, dict[str, np.ndarray]],
    sets: dict[str, FingerprintSet],
    config: EvaluateConfig,
) -> list[dict[str, Any]]:
    """Per method, budget and split, the metrics on the first B fingerprints' answers; the
    set's own size is always among the budgets (the headline)."""
    # manifest order, as the headline's rows: the bootstrap then resamples alike on any engine
    roles = {r["id"]: r["role"] for r in bench.rows()}
    out = []
    for method, fingerprints in sets.items():
        for budget in sorted({*config.budgets, len(fingerprints)}):
            expected = fingerprints.y_orig[:budget]
            rates = {
                suspect: matching_rate(answers[suspect][method][:budget], expected)
                for suspect in roles
            }
            for split, members in (
                ("heldout", [s for s in rates if config.use_of(s) == "heldout"]),
                ("all", list(rates)),
            ):
                pos = [rates[s] for s in members if roles[s] == "positive"]
                neg = [rates[s] for s in members if roles[s] == "negative"]
                if pos and neg:
                    summary = summarize(pos, neg)
                    # the same resampling as the headline's, so the full set's reproduces it
                    low, high = bootstrap_ci(
                        pos, neg, num_resamples=config.bootstrap, seed=config.seed
                    )
                    out.append(
                        {
                            "method": method,
                            "budget": budget,
                            "full_set": budget == len(fingerprints),
                            "split": split,
                            **{k: summary[k] for k in BUDGET_METRICS},
                            "aruc_ci95_low": low,
                            "aruc_ci95_high": high,
                        }
                    )
    return out


def _answer_rows(answers: dict[str, dict[str, np.ndarray]]) -> list[dict[str, Any]]:
    return [
        {"method": method, "suspect": suspect, "labels": labels.astype(np.int16).tolist()}
        for suspect, by_method in answers.items()
        for method, labels in by_method.items()
    ]


def _rate_rows(
    bench: Benchmark,
    answers: dict[str, dict[str, np.ndarray]],
    sets: dict[str, FingerprintSet],
    config: EvaluateConfig,
) -> list[dict[str, Any]]:
    rows = []
    for row in bench.rows():
        for method, labels in answers[row["id"]].items():
            rate = matching_rate(labels, sets[method].y_orig)
            rows.append(
                {
                    "method": method,
                    "suspect": row["id"],
                    "role": row["role"],
                    "attack": row["attack"],
                    "params": row["params"],
                    "arch": row["arch"],
                    "mirror_of": row["mirror_of"],
                    "use": config.use_of(row["id"]),
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
            "validation_models": sorted(config.validation_models),
            "heldout_models": sorted({r["suspect"] for r in rows if r["use"] == "heldout"}),
        },
        "methods": {},
    }
    for method, group in by_method.items():
        entry: dict[str, Any] = {}
        for split, members in (
            ("heldout", [r for r in group if r["use"] == "heldout"]),
            ("validation", [r for r in group if r["use"] == "validation"]),
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


def _write(
    output_uri: str,
    rows: list[dict[str, Any]],
    metrics: dict[str, Any],
    answers: list[dict[str, Any]],
    budgets: list[dict[str, Any]],
) -> None:
    write_bytes_atomic(join(output_uri, "answers.parquet"), _parquet(answers))
    write_bytes_atomic(join(output_uri, "budgets.parquet"), _parquet(budgets))
    write_bytes_atomic(join(output_uri, "rates.parquet"), _parquet(rows))
    margins = margin_rows(rows)
    if margins:
        write_bytes_atomic(join(output_uri, "margins.parquet"), _parquet(margins))
    write_bytes_atomic(
        join(output_uri, "metrics.json"), json.dumps(metrics, indent=2, sort_keys=True).encode()
    )
    logger.info("wrote %s/{answers,rates,margins,budgets}.parquet and metrics.json", output_uri)
