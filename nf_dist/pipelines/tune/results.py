"""What a sweep leaves: the trials table, the exported best config, the test scores and the
Prometheus feed of the Tune driver.
"""

from __future__ import annotations

import io
import logging
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from ray import tune

from nf_dist.config import dump_yaml, to_dict
from nf_dist.errors import FingerprintError
from nf_dist.fingerprint.fingerprint_set import save_fingerprint_set
from nf_dist.fingerprint.methods import METHODS
from nf_dist.pipelines.evaluate import EvaluateConfig, run_evaluate
from nf_dist.pipelines.fingerprint import FingerprintJobConfig
from nf_dist.pipelines.tune.config import TuneJobConfig
from nf_dist.pipelines.tune.split import ThreeWaySplit
from nf_dist.pipelines.tune.trial import generate_with, method_settings
from nf_dist.storage.uri import join, write_bytes_atomic
from nf_dist.telemetry.metrics import TUNE_BEST_OBJECTIVE, TUNE_REPORTS, TUNE_TRIALS

logger = logging.getLogger(__name__)


def export_best(config: TuneJobConfig, tuned: Any) -> str:
    """The best settings as a YAML the matching command accepts as it is: an ``nf-dist
    fingerprint`` config for a generative method, an experiment ``sets`` entry otherwise."""
    if METHODS.get(config.method).needs_gan:
        uri = join(config.output_uri, "best_fingerprint.yaml")
        job = FingerprintJobConfig(
            output_uri=join(config.output_uri, "best_fingerprint.parquet"),
            gan_uri=config.gan_uri,
            models=config.models,
            sharding=config.sharding,
            fingerprint=tuned,
        )
        write_bytes_atomic(uri, dump_yaml(job).encode())
    else:
        uri = join(config.output_uri, "best_config.yaml")
        entry = {"method": config.method, "config": to_dict(tuned)}
        write_bytes_atomic(uri, dump_yaml({f"{config.method}-tuned": entry}).encode())
    return uri


def score_on_test(
    config: TuneJobConfig, split: ThreeWaySplit, tuned: Any, progress: bool
) -> dict[str, Any]:
    """Generate with the tuned and the base settings; evaluate both on the test suspects only."""
    sets = {}
    for label, settings in (("tuned", tuned), ("base", method_settings(config, {}))):
        uri = join(config.output_uri, "test", f"{label}.parquet")
        try:
            save_fingerprint_set(generate_with(config, settings, progress=progress), uri)
            sets[label] = uri
        except FingerprintError as exc:
            logger.warning("the %s settings kept no fingerprint: %s", label, exc)
    if not sets:
        return {"failure": "neither the tuned nor the base settings kept a fingerprint"}
    metrics = run_evaluate(
        EvaluateConfig(
            bench_uri=config.models.bench_uri or "",
            fingerprints=sets,
            generation_models=(*split.generation, *split.validation),
            output_uri=join(config.output_uri, "test", "evaluation"),
            backend="ray",
            address=config.sharding.address,
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


def trial_rows(results: Any, config: TuneJobConfig) -> list[dict[str, Any]]:
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


def write_trials(uri: str, rows: list[dict[str, Any]]) -> None:

    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    write_bytes_atomic(uri, buffer.getvalue())


class MetricsCallback(tune.Callback):  # type: ignore[misc]
    """Feeds nf-dist's Prometheus metrics from the Tune driver: trials by status, the best
    objective so far."""

    def __init__(self, metric: str) -> None:
        self.metric, self.best = metric, float("-inf")

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **_: Any
    ) -> None:

        TUNE_REPORTS.inc()
        value = result.get(self.metric)
        if value is not None and value > self.best:
            self.best = float(value)
            TUNE_BEST_OBJECTIVE.labels(metric=self.metric).set(self.best)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **_: Any) -> None:

        TUNE_TRIALS.labels(status="completed").inc()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **_: Any) -> None:

        TUNE_TRIALS.labels(status="error").inc()
