"""Ray Tune sweeps on the smoke benchmark: trials in placement groups, the three-way split, the
exported config through `nf-dist fingerprint`, resume, and the same sweep for a baseline."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from nf_dist.cli import main
from nf_dist.config import from_dict, load_config
from nf_dist.pipelines.fingerprint import FingerprintJobConfig
from nf_dist.pipelines.tune import TuneJobConfig, run_tune

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_cluster")]

VALIDATION = ["ftll", "rtal", "prune-0.5", "mirror-ftll", "indep-vgg13_bn"]


def _job(bench: str, gan: str, out: Path, **extra: object) -> TuneJobConfig:
    raw = {  # relative local paths: trials run in their own working directories
        "gan_uri": os.path.relpath(gan) if gan else "",
        "models": {
            "bench_uri": os.path.relpath(bench),
            "positives": ["source"],
            "negatives": ["mirror-source"],
        },
        "validation_models": VALIDATION,
        "base": {"num_candidates": 48, "num_optimised": 24, "steps": 6, "batch_size": 64},
        "search_space": {
            "lr": {"kind": "choice", "values": [0.05, 0.5, 2.0]},
            "k": {"kind": "uniform", "low": 5.0, "high": 60.0},
        },
        "num_samples": 3,
        "report_every": 2,
        "grace_reports": 1,
        "sharding": {"backend": "ray", "num_shards": 1, "cpus_per_shard": 0.5},
        "cpus_per_trial": 0.5,
        "storage_uri": str(out / "tune"),
        "name": "smoke-sweep",
        "output_uri": str(out / "results"),
        "final_test": False,
        **extra,
    }
    return from_dict(TuneJobConfig, raw)


def test_a_three_trial_sweep_exports_a_config_that_fingerprint_accepts(
    smoke_bench: tuple[str, object], tiny_gan_uri: str, tmp_path: Path
) -> None:
    from prometheus_client import REGISTRY

    def ended() -> float:
        return REGISTRY.get_sample_value("nf_tune_trials_total", {"status": "completed"}) or 0.0

    bench, _ = smoke_bench
    before = ended()
    summary = run_tune(_job(bench, tiny_gan_uri, tmp_path), progress=False)
    assert ended() - before == 3  # the driver's callback counts every trial that ended
    best_seen = REGISTRY.get_sample_value("nf_tune_best_objective", {"metric": "val_aruc"})
    # the gauge follows every report, the summary each trial's last one
    assert best_seen is not None and best_seen >= summary["best_validation_objective"]

    split = json.loads((tmp_path / "results" / "split.json").read_text())
    assert split["generation"] == ["source", "mirror-source"]
    assert split["validation"] == sorted(VALIDATION)
    assert not set(split["test"]) & (set(split["validation"]) | set(split["generation"]))
    assert len(split["generation"]) + len(split["validation"]) + len(split["test"]) == 12

    trials = pq.read_table(tmp_path / "results" / "trials.parquet").to_pylist()
    assert len(trials) == summary["num_trials"] == 3
    for trial in trials:
        assert trial["param_lr"] in (0.05, 0.5, 2.0) and 5.0 <= trial["param_k"] <= 60.0
        assert 1 <= trial["reports"] <= 3  # every 2 of 6 steps, fewer if ASHA stopped it
        assert 0.0 <= trial["last_objective"] <= 1.0
    best = max(trials, key=lambda t: t["last_objective"])
    assert summary["best_validation_objective"] == best["last_objective"]

    # The exported YAML is a fingerprint config as it is: the best values, the same models.
    exported = tmp_path / "results" / "best_fingerprint.yaml"
    config = load_config(FingerprintJobConfig, str(exported), [])
    assert config.fingerprint.lr == best["param_lr"]
    assert config.fingerprint.k == pytest.approx(best["param_k"])
    assert config.fingerprint.steps == 6 and config.models.positives == ("source",)
    out = tmp_path / "again.parquet"
    code = main(["fingerprint", "--config", str(exported), "--set", f"output_uri={out}"])
    assert code == 0 and out.exists()

    report = (tmp_path / "results" / "report.md").read_text()
    assert "objective_vs_params.png" in report and "| lr |" in report
    assert (tmp_path / "results" / "objective_vs_params.png").stat().st_size > 1000

    # Running the same config again restores the finished experiment instead of starting over.
    again = run_tune(_job(bench, tiny_gan_uri, tmp_path), progress=False)
    assert again["best_params"] == summary["best_params"] and again["num_trials"] == 3


def test_a_baseline_sweeps_with_the_same_machinery(
    smoke_bench: tuple[str, object], tmp_path: Path, cifar_test_uri: str
) -> None:
    bench, _ = smoke_bench
    train_uri = str(Path(cifar_test_uri).with_name("train.parquet"))
    job = _job(
        bench,
        "",
        tmp_path,
        method="metav",
        base={"num_fingerprints": 10, "steps": 3},
        search_space={"lr": {"kind": "grid", "values": [0.001, 0.01]}},
        searcher="grid",
        num_samples=1,
        data={
            "train_uri": train_uri,
            "test_uri": cifar_test_uri,
            "test_size": 100,
            "finetune_size": 100,
            "half_size": 200,
        },
        final_test=True,
    )
    summary = run_tune(job, progress=False)
    assert summary["num_trials"] == 2  # the grid, once
    exported = yaml.safe_load((tmp_path / "results" / "best_config.yaml").read_text())
    assert exported["metav-tuned"]["method"] == "metav"
    assert exported["metav-tuned"]["config"]["lr"] == summary["best_params"]["lr"]
    for label in ("tuned", "base"):
        assert 0.0 <= summary["test"][label]["aruc"] <= 1.0
        assert summary["test"][label]["num_test_suspects"] == 12 - 2 - len(VALIDATION)


def test_config_errors_name_the_fix(smoke_bench: tuple[str, object], tmp_path: Path) -> None:
    from nf_dist.errors import ConfigError

    bench, _ = smoke_bench
    with pytest.raises(ConfigError, match="search_space.learning_rate is not a setting"):
        run_tune(
            _job(bench, "g", tmp_path, search_space={"learning_rate": {"values": [1.0]}}),
            progress=False,
        )
    with pytest.raises(ConfigError, match="no model 'nope'"):
        run_tune(_job(bench, "g", tmp_path, validation_models=["nope"]), progress=False)
    with pytest.raises(ConfigError, match="asks for 9.5 CPU"):
        run_tune(_job(bench, "g", tmp_path, cpus_per_trial=9.0), progress=False)
