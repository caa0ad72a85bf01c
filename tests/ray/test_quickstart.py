"""The quickstart end to end on tiny models: its zoo is built as Ray tasks through the bench
build path (resumable: a second run trains nothing), then fingerprinted and verified."""

from __future__ import annotations

import json
from pathlib import Path

from nf_dist.bench.store import BenchStore
from nf_dist.config import load_config
from nf_dist.fingerprint.fingerprint_set import load_fingerprint_set
from nf_dist.pipelines.quickstart import QuickstartConfig, run_quickstart

TINY_TRAIN = {"epochs": 1, "lr": 0.1, "batch_size": 64}
TUNE = {"epochs": 1, "lr": 0.01, "batch_size": 64}


def _config(output_dir: Path, gan_uri: str, cifar_test_uri: str) -> QuickstartConfig:
    tiny = {"width": 0.0625, "stem_stride": 2}
    cifar = Path(cifar_test_uri).parent
    return load_config(
        QuickstartConfig,
        base={
            "output_dir": str(output_dir),
            "data": {
                "train_uri": str(cifar / "train.parquet"),
                "test_uri": str(cifar / "test.parquet"),
                "half_size": 300,
                "finetune_size": 100,
                "test_size": 200,
                "cache_dir": str(output_dir.parent / "cache"),  # this test's own decoded data
            },
            "models": [
                {"id": "source", "role": "positive", "attack": "scratch", "data_half": "a",
                 "use": "generation", "arch": "resnet18", "train": TINY_TRAIN, **tiny},
                {"id": "ftal", "role": "positive", "attack": "finetune", "parent": "source",
                 "use": "generation", "params": {"mode": "ftal"}, "train": TUNE},
                {"id": "ftll", "role": "positive", "attack": "finetune", "parent": "source",
                 "params": {"mode": "ftll"}, "train": TUNE},
                {"id": "prune_s", "role": "positive", "attack": "prune", "parent": "source",
                 "use": "screening", "params": {"rate": 0.1}, "train": TUNE},
                {"id": "indep_a", "role": "negative", "attack": "scratch", "data_half": "b",
                 "use": "generation", "arch": "resnet18", "seed": 10, "train": TINY_TRAIN,
                 **tiny},
                {"id": "indep_b", "role": "negative", "attack": "scratch", "data_half": "b",
                 "use": "generation", "arch": "vgg13_bn", "seed": 11, "train": TINY_TRAIN,
                 **tiny},
                {"id": "indep_c", "role": "negative", "attack": "scratch", "data_half": "b",
                 "arch": "vgg13_bn", "seed": 12, "train": TINY_TRAIN, **tiny},
            ],
            "gan": {"checkpoint": gan_uri},
            "fingerprint": {
                "num_fingerprints": 8,
                "num_candidates": 64,
                "num_optimised": 16,
                "steps": 4,
                "batch_size": 32,
                "positives_per_step": 2,
                "negatives_per_step": 2,
                "screen_negatives": "not_original",
                "screen_transforms": ["identity"],
            },
        },
    )  # fmt: skip


def test_quickstart_builds_its_zoo_on_ray_and_resumes(
    ray_cluster: None, tiny_gan_uri: str, cifar_test_uri: str, tmp_path: Path
) -> None:
    config = _config(tmp_path / "qs", tiny_gan_uri, cifar_test_uri)
    first = run_quickstart(config, progress=False)
    store = BenchStore(str(tmp_path / "qs"))
    ids = [m.id for m in config.models]
    rows = {i: store.read_row(i) for i in ids}
    assert all(rows.values()), "every zoo model is committed in the bench store"
    assert [r["id"] for r in first.rows] == ids
    accuracy = {r["id"]: r["test_accuracy"] for r in first.rows}
    assert accuracy == {i: round(rows[i]["test_accuracy"], 4) for i in ids}  # type: ignore[index]
    assert {r["use"] for r in first.rows} == {"generation", "screening", "heldout"}
    assert first.num_fingerprints >= 1
    # Only held-out suspects are scored: ftll against indep_c, never the screening model.
    assert (first.heldout["num_positive"], first.heldout["num_negative"]) == (1.0, 1.0)
    fingerprints = load_fingerprint_set(str(tmp_path / "qs" / "fingerprint.parquet"))
    assert fingerprints.info["screening_positives"] == ["prune_s"]
    assert (tmp_path / "qs" / "fingerprint.progress.json").exists(), "the descent is checkpointed"

    again = run_quickstart(config, progress=False)
    assert again.rows == first.rows, "the second run reuses the zoo and the fingerprint set"
    # A retrained model would commit a new row (its own wall time); a reused one keeps it.
    assert {i: store.read_row(i) for i in ids} == rows
    recorded = json.loads((tmp_path / "qs" / "result.json").read_text())
    assert recorded["num_fingerprints"] == first.num_fingerprints
