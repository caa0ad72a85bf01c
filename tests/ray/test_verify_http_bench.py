"""The HTTP verification benchmark (``benchmarks/verify_http/run.py``) on the smoke FingerBench: a
served suspect's queries per second, and verdicts calibrated on validation negatives only whose
false-positive rate on the held-out negatives stays where the nominal rate puts it."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml

from benchmarks.verify_http.run import RESULTS, main
from nf_dist.bench import load
from nf_dist.bench.selection import ModelSelection
from nf_dist.data import load_dataset
from nf_dist.distributed.engines import ShardingConfig
from nf_dist.fingerprint.fingerprint_set import save_fingerprint_set
from nf_dist.fingerprint.methods.akh import AkhConfig
from nf_dist.fingerprint.naturalfinger import NaturalFingerConfig
from nf_dist.models.gan import GanSpec, build_gan
from nf_dist.pipelines.fingerprint import OwnerAssets, generate_set
from nf_dist.storage.checkpoints import save_checkpoint
from nf_dist.verification.decision import NullModel, p_value

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_cluster")]

GENERATION = {"positives": ["source"], "negatives": ["mirror-source"]}
#: Two validation negatives calibrate the null (the least it takes); one negative stays held out.
VALIDATION = ["ftll", "rtal", "mirror-ftll", "indep-vgg13_bn"]


def _seeded_tiny_gan(folder: Path) -> str:
    """An untrained 8-channel GAN drawn from seed 0, so the NaturalFinger set is the same on
    every run (the session's ``tiny_gan_uri`` depends on which tests drew numbers before)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        generator, discriminator = build_gan(GanSpec(16, 10, 8, 8, False))
    tensors = {f"generator.{k}": v for k, v in generator.state_dict().items()}
    tensors |= {f"discriminator.{k}": v for k, v in discriminator.state_dict().items()}
    spec = {"z_dim": 16, "num_classes": 10, "g_channels": 8, "d_channels": 8, "attention": False}
    return save_checkpoint(str(folder / "gan"), tensors, {"kind": "gan", "spec": spec})


@pytest.fixture(scope="module")
def smoke_sets(
    smoke_bench: tuple[str, object], cifar_test_uri: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """A small NaturalFinger set (a tiny untrained GAN, a few steps) and an AKH set, made from
    the generation models of the smoke bench."""
    bench, _ = smoke_bench
    folder = tmp_path_factory.mktemp("verify_http_sets")
    tiny_gan_uri = _seeded_tiny_gan(folder)
    models = ModelSelection(bench, tuple(GENERATION["positives"]), tuple(GENERATION["negatives"]))
    settings = NaturalFingerConfig(num_candidates=48, num_optimised=24, steps=6, batch_size=64)
    clean = load_dataset(cifar_test_uri, split="test")
    made = {
        "naturalfinger": generate_set(
            "naturalfinger", settings, OwnerAssets(models, tiny_gan_uri), ShardingConfig()
        ),
        "akh": generate_set(
            "akh",
            AkhConfig(num_fingerprints=60),
            OwnerAssets(models, clean=clean.subset(list(range(500)))),
            ShardingConfig(),
        ),
    }
    uris = {}
    for name, fingerprints in made.items():
        uris[name] = str(folder / f"{name}.parquet")
        save_fingerprint_set(fingerprints, uris[name])
    return uris


def _most_false_positives(num_negatives: int, alpha: float, tolerance: float = 0.01) -> int:
    """The fewest false positives ``c`` with P(Binomial(num_negatives, alpha) > c) < tolerance:
    more than that, and the verdicts are not at the nominal rate."""
    tail = 1.0
    for count in range(num_negatives + 1):
        tail -= (
            math.comb(num_negatives, count) * alpha**count * (1 - alpha) ** (num_negatives - count)
        )
        if tail < tolerance:
            return count
    return num_negatives


def test_qps_and_a_false_positive_rate_calibrated_on_validation_negatives_only(
    smoke_bench: tuple[str, object],
    smoke_sets: dict[str, str],
    cifar_test_uri: str,
    tmp_path: Path,
    own_processes: Callable[[str], list[int]],
) -> None:
    bench_uri, _ = smoke_bench
    config = tmp_path / "verify_http.yaml"
    raw = {
        "name": "verify_http_smoke_test",
        "models": {"bench_uri": bench_uri, **GENERATION},
        "validation_models": VALIDATION,
        "sets": smoke_sets,
        "headline": "naturalfinger",
        "alphas": [1e-3, 0.05],
        "batch": 5,
        "repeats": 2,
        "endpoint": {"qps": 1000.0, "batch_size": 8},
        "cover_uri": cifar_test_uri,
        "num_cover": 200,
    }
    config.write_text(yaml.safe_dump(raw))
    results = tmp_path / "results"
    returned = main(["--config", str(config), "--results", str(results)])

    record = json.loads((results / "verify_http_smoke_test.json").read_text())
    assert record == json.loads(json.dumps(returned))
    assert "verify_http_smoke_test" in (results / "verify_http_smoke_test.md").read_text()
    assert not (RESULTS / "verify_http_smoke_test.json").exists()
    assert record["command"].endswith(f"--results {results}") and record["machine"]["cpu_count"]
    assert not own_processes("nf_dist.cli serve"), "the benchmark stopped its server"

    # The headline: which set, at which nominal rate, and a measured rate the data allows.
    assert record["headline"] == {"set": "naturalfinger", "alpha": 1e-3, "mode": "one look"}
    assert record["nominal_false_positive_rate"] == 1e-3
    roles = {row["id"]: row["role"] for row in load(bench_uri).manifest.to_pylist()}
    split = record["split"]
    assert split["validation"] == sorted(VALIDATION)
    test_negatives = [i for i in split["test"] if roles[i] == "negative"]
    headline = record["sets"]["naturalfinger"]["by_alpha"][0]["one_look"]
    assert record["false_positive_rate"] == headline["false_positive_rate"]
    allowed = _most_false_positives(len(test_negatives), 1e-3)
    assert record["false_positive_rate"] <= allowed / len(test_negatives)

    for name, stats in record["sets"].items():
        # Calibrated on validation negatives only, scored on test suspects only.
        calibration = set(stats["calibration_models"])
        assert calibration == {i for i in VALIDATION if roles[i] == "negative"}, name
        assert not calibration & set(stats["scored_suspects"])
        assert not calibration & set(split["generation"])
        assert set(stats["scored_suspects"]) == set(split["test"])
        n, null = (
            stats["num_fingerprints"],
            NullModel(
                stats["null"]["a"],
                stats["null"]["b"],
                stats["null"]["calibration_mean"],
                stats["null"]["calibration_models"],
            ),
        )
        rates = stats["matching_rates"]
        false_rates = []
        for row in stats["by_alpha"]:
            alpha, one, seq = (
                row[k] for k in ("nominal_false_positive_rate", "one_look", "sequential")
            )
            # The recorded verdicts are those of the recorded null on the recorded answers.
            rejected = [i for i in test_negatives if p_value(round(rates[i] * n), n, null) <= alpha]
            assert one["false_positives"] == rejected, (name, alpha)
            assert one["num_negatives"] == len(test_negatives)
            assert 0 <= seq["false_positive_rate"] <= 1 and 0 <= seq["true_positive_rate"] <= 1
            spent = seq["queries_per_positive"]
            assert min(5, n) <= spent["median"] <= spent["max"] <= n, (name, alpha)
            false_rates.append(one["false_positive_rate"])
        assert false_rates == sorted(false_rates), "a larger alpha never rejects fewer"
        # The null is conservative on its own data: no calibration model would be called stolen.
        assert all(p_value(round(rates[i] * n), n, null) > 1e-3 for i in calibration)

    moved = record["transport"]
    assert moved["set"] == "naturalfinger" and moved["suspect"] in split["test"]
    assert moved["http"]["queries_per_s"] > 0 and moved["in_process"]["queries_per_s"] > 0
    assert moved["same_labels"], "HTTP answers are the in-process model's"
    n = moved["num_queries"]
    assert moved["images_sent_per_run"] == 2 * n  # one cover image per fingerprint
    assert moved["requests_per_run"] >= math.ceil(2 * n / 8)
    http, local = (statistics.median(moved[k]["seconds"]) for k in ("http", "in_process"))
    assert moved["overhead_s_per_query"] == pytest.approx((http - local) / n)
    assert moved["overhead_ratio"] == pytest.approx(http / local)
