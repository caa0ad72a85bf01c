"""The FingerBench build on a real local Ray: local folder and loopback S3, resume after damage,
a worker killed mid-build, fail-fast on a missing bucket, and the /metrics endpoint."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
import ray
import torch
from prometheus_client.parser import text_string_to_metric_families

from nf_dist import bench
from nf_dist.bench.build import BuildConfig, build_bench
from nf_dist.bench.store import MANIFEST_SCHEMA, BenchStore
from nf_dist.errors import ConfigError, NfDistError

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_cluster")]

SMOKE_IDS = 12


def _config(output_uri: str, **kwargs: object) -> BuildConfig:
    return BuildConfig(profile="smoke", output_uri=output_uri, progress=False, **kwargs)  # type: ignore[arg-type]


def _assert_complete(uri: str) -> None:
    loaded = bench.load(uri)
    assert len(loaded.ids()) == SMOKE_IDS
    store = BenchStore(uri)
    for row in loaded.manifest.to_pylist():
        assert store.verified_row(row["id"], json.loads(row["row"])) is not None, row["id"]


@pytest.fixture
def built_local(smoke_bench: tuple[str, object]) -> tuple[str, object]:
    return smoke_bench


def test_smoke_builds_locally_with_a_full_manifest(built_local) -> None:
    uri, report = built_local
    assert len(report.built) == SMOKE_IDS and not report.failed
    _assert_complete(uri)
    manifest = bench.load(uri).manifest.to_pylist()
    source = next(r for r in manifest if r["id"] == "source")
    weights = Path(uri, "models", "source.safetensors").read_bytes()
    assert source["sha256"] == hashlib.sha256(weights).hexdigest()
    assert source["bytes"] == len(weights)
    assert 0 <= source["test_accuracy"] <= 1 and source["wall_s"] > 0
    assert {r["role"] for r in manifest} == {"positive", "negative"}
    # Every model is checked against its accuracy floor; those below are reported, not hidden.
    assert {c.id for c in report.floors} == {r["id"] for r in manifest} - {"source"}
    accuracy = {r["id"]: r["test_accuracy"] for r in manifest}
    for check in report.floors:
        factor = 0.70 if check.id.startswith("knockoff") else 0.85
        assert check.floor == pytest.approx(factor * accuracy[check.reference])
        assert check.below == (accuracy[check.id] < check.floor)
    assert report.below_floor == [c for c in report.floors if c.below]


def test_loaded_models_answer_like_the_built_ones(built_local) -> None:
    import torch

    uri, _ = built_local
    model = bench.load(uri).model("ftll")
    assert model(torch.rand(3, 3, 32, 32)).shape == (3, 10)
    with pytest.raises(Exception, match="no model"):
        bench.load(uri).model("nope")


def test_metrics_endpoint_counts_the_build(built_local) -> None:
    _, report = built_local
    assert report.metrics_port
    text = urllib.request.urlopen(f"http://127.0.0.1:{report.metrics_port}/metrics").read()
    families = {f.name: f for f in text_string_to_metric_families(text.decode())}
    built = sum(
        s.value for s in families["nf_bench_models_built"].samples if s.name.endswith("_total")
    )
    assert built >= SMOKE_IDS
    seconds = families["nf_bench_model_build_seconds"]
    assert any(s.labels.get("attack") == "knockoff" for s in seconds.samples)


def test_status_follows_a_build_model_by_model(built_local, tmp_path: Path, capsys) -> None:
    from nf_dist.bench.catalog import load_profile
    from nf_dist.bench.partial import EpochCheckpoints
    from nf_dist.bench.status import bench_status
    from nf_dist.bench.task import row_key
    from nf_dist.cli import main
    from nf_dist.models import create_classifier
    from nf_dist.models.training import TrainProgress

    uri = str(tmp_path / "copy")
    shutil.copytree(built_local[0], uri)  # the shared bench stays as built
    profile = load_profile("smoke")
    manifest = {r["id"]: r for r in bench.load(uri).manifest.to_pylist()}
    assert {m.id: (m.state, m.test_accuracy) for m in bench_status(profile, uri)} == {
        i: ("built", r["test_accuracy"]) for i, r in manifest.items()
    }
    # The source stopped after 3 of its epochs: it is in training, its children will be rebuilt.
    store, source = BenchStore(uri), profile.by_id()["source"]
    Path(store.row_uri("source")).unlink()
    model = create_classifier(source.arch, width=source.width, stem_stride=source.stem_stride)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    progress = TrainProgress(30, {}, optimizer.state_dict(), [2.3, 2.1, 1.9])
    identity = {"row": row_key(source), "parent_sha256": None}

    def checkpoint(identity: dict) -> None:  # what the source's task saves after an epoch
        save = EpochCheckpoints(store.partial_uri("source"), identity).attach(model).on_epoch_end
        assert save is not None
        save(progress)

    checkpoint(identity)
    status = {m.id: m for m in bench_status(profile, uri)}
    assert (status["source"].state, status["source"].epochs_done) == ("training", 3)
    children = {m.id for m in profile.all_models if m.parent == "source"}
    assert children and all(status[i].state == "rebuild" for i in children)
    assert all(m.state == "built" for i, m in status.items() if i not in children | {"source"})
    # A checkpoint of another row is not one a build resumes from.
    checkpoint({**identity, "row": row_key(replace(source, seed=source.seed + 1))})
    assert main(["bench", "status", "--profile", "smoke", "--output", uri, "--json"]) == 0
    printed = {m["id"]: m for m in json.loads(capsys.readouterr().out)}
    assert printed["source"]["state"] == "waiting"
    assert printed["ftll"]["state"] == "rebuild" and printed["ftll"]["epochs"] > 0


def test_rebuilds_only_what_is_missing_or_corrupt(built_local) -> None:
    uri, _ = built_local
    Path(uri, "models", "noise-3.safetensors").write_bytes(b"not a model")
    Path(uri, "rows", "ftll.json").unlink()
    report = build_bench(_config(uri))
    assert sorted(report.built) == ["ftll", "noise-3"]
    assert len(report.skipped) == SMOKE_IDS - 2
    _assert_complete(uri)


def test_a_model_whose_parent_changed_is_rebuilt_with_it(built_local, tmp_path: Path) -> None:
    """A wider independent VGG13 is a new teacher: its ResNet18 student, whose own catalog row
    did not change, was distilled from the old weights and must be built again; a build of the
    teacher alone (``--only``) leaves that student out of the manifest until then."""
    uri = str(tmp_path / "bench")
    shutil.copytree(built_local[0], uri)
    wider = {"arch_width": {"vgg13_bn": 0.25}}
    teacher_only = build_bench(_config(uri, profile_overrides=wider, only=("indep-vgg13_bn",)))
    assert teacher_only.built == ["indep-vgg13_bn"]
    listed = {row["id"] for row in bench.load(uri).manifest.to_pylist()}
    # the student outside `--only` was distilled from the old teacher: not listed until rebuilt
    assert "indep-vgg13_bn" in listed and "indep-vgg13_bn-distilled" not in listed
    assert "source" in listed
    report = build_bench(_config(uri, profile_overrides=wider))
    assert sorted(report.built) == ["distill-vgg13_bn", "indep-vgg13_bn-distilled"]
    store = BenchStore(uri)
    student = store.read_row("indep-vgg13_bn-distilled")
    assert student is not None
    assert student["parent_sha256"] == store.read_row("indep-vgg13_bn")["sha256"]  # type: ignore[index]
    assert build_bench(_config(uri, profile_overrides=wider)).built == []


ENSEMBLES = {
    "ensembles": [
        {
            "id": "ens-s",
            "role": "positive",
            "arch": "vgg13_bn",
            "attack": "distill",
            "recipe": "student",
            "parent": "source",
            "data_half": "a",
            "seed": 50,
        },
        {
            "id": "ens-r",
            "role": "negative",
            "arch": "resnet18",
            "attack": "scratch",
            "recipe": "source",
            "data_half": "b",
            "seed": 51,
        },
    ]
}


@pytest.fixture(scope="module")
def ensemble_bench(smoke_bench, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, object]:
    """A copy of the smoke benchmark with a surrogate (a student of the source) and a reference
    (trained on half b) built into it by the same build: its URI and that build's report."""
    uri = str(tmp_path_factory.mktemp("ensembles") / "bench")
    shutil.copytree(smoke_bench[0], uri)
    return uri, build_bench(_config(uri, profile_overrides=ENSEMBLES))


def test_ensembles_are_built_alongside_and_never_listed_as_suspects(ensemble_bench) -> None:
    """The ensembles are listed in the manifest's ensemble section with their agreement with the
    source, outside the benchmark's ids and floors; a second build builds nothing."""
    uri, report = ensemble_bench
    assert sorted(report.built) == ["ens-r", "ens-s"] and len(report.skipped) == SMOKE_IDS
    built = bench.load(uri)
    assert len(built.ids()) == SMOKE_IDS and not {"ens-s", "ens-r"} & set(built.ids())
    assert sorted(built.ids(section="ensemble")) == ["ens-r", "ens-s"]
    assert built.ids("negative", section="ensemble") == ["ens-r"]
    rows = {r["id"]: r for r in built.manifest.to_pylist()}
    agreement = {i: rows[i]["agreement_with_source"] for i in ("ens-s", "ens-r")}
    assert all(0 < v <= 1 for v in agreement.values()), agreement
    assert rows["source"]["section"] == "bench" and rows["source"]["agreement_with_source"] is None
    assert not {"ens-s", "ens-r"} & {check.id for check in report.floors}
    again = build_bench(_config(uri, profile_overrides=ENSEMBLES))
    assert again.built == [] and bench.load(uri).manifest.equals(built.manifest)


def test_an_experiment_generates_from_ensembles_and_scores_only_suspects(
    ensemble_bench, tmp_path: Path, cifar_test_uri: str, tiny_gan_uri: str
) -> None:
    """The quality trend's shape (jobs/configs/trend_cpu40.yaml) on the smoke bench: every set
    generated from the source and the ensembles (NaturalFinger by model dropout, its descent
    re-screened by conferrability, CAE), the validation models chosen by name, and only
    benchmark suspects outside the generation models scored."""
    import pyarrow.parquet as pq

    from nf_dist.config import from_dict
    from nf_dist.pipelines.experiment import ExperimentConfig, run_experiment

    uri, _ = ensemble_bench
    nf = {"num_candidates": 64, "num_optimised": 32, "steps": 4, "screen_negatives": "not_original"}
    dropout = {**nf, "model_sampling": "dropout", "model_dropout": 0.3, "screen_order": "margin"}
    cae = {"num_fingerprints": 20, "num_seeds": 40, "steps": 3}
    raw = {
        "output_uri": str(tmp_path / "exp"),
        "report_dir": str(tmp_path / "exp" / "report"),
        "data": {
            "train_uri": str(Path(cifar_test_uri).with_name("train.parquet")),
            "test_uri": cifar_test_uri,
            "half_size": 600,
            "finetune_size": 200,
            "test_size": 200,
        },
        "gans": {"tiny": tiny_gan_uri},
        "models": {"bench_uri": uri, "positives": ["source", "ens-s"], "negatives": ["ens-r"]},
        "validation_models": ["ftll", "mirror-source"],
        "bootstrap": 20,
        "budgets": [5],
        "stealth": {"seeds": []},  # measured by the experiment test above
        "sets": {
            "naturalfinger-dropout": {"method": "naturalfinger", "gan": "tiny", "config": dropout},
            "naturalfinger-conferrable": {
                "method": "naturalfinger",
                "gan": "tiny",
                "rescreen_of": "naturalfinger-dropout",
                "config": dropout | {"screen_rule": "conferrability", "screen_conferrability": 0.5},
            },
            "cae": {"method": "cae", "config": cae},
            "akh": {"method": "akh", "config": {"num_fingerprints": 20}},
        },
    }
    result = run_experiment(from_dict(ExperimentConfig, raw), progress=False)
    made = {n for n, r in result["sets"].items() if "failure" not in r}
    assert {"cae", "akh"} <= made, result["sets"]
    rows = pq.read_table(tmp_path / "exp" / "evaluation" / "rates.parquet").to_pylist()
    scored = {r["suspect"] for r in rows if r["use"] != "generation"}
    suspects = set(bench.load(uri).ids()) - {"source"}
    assert scored and scored <= suspects, scored - suspects
    assert not {"ens-s", "ens-r"} & {r["suspect"] for r in rows}
    # each set records the weights it was made from: a rebuilt ensemble makes it stale
    record = json.loads((tmp_path / "exp" / "sets" / "cae.json").read_text())
    built = bench.load(uri)
    assert record["model_sha256"] == {
        i: built.row(i)["sha256"] for i in ("source", "ens-s", "ens-r")
    }
    for name in made:
        uses = {r["suspect"]: r["use"] for r in rows if r["method"] == name}
        assert uses["ftll"] == "validation" and uses["mirror-source"] == "validation"
        assert {"validation", "heldout"} <= set(result["methods"][name])


def test_a_student_from_before_parents_were_recorded_is_rebuilt_with_its_teacher(
    built_local, tmp_path: Path
) -> None:
    """A row without ``parent_sha256`` (built before parents were recorded) cannot be checked
    against its teacher's weights: a build that rebuilds the teacher rebuilds it too, and a build
    that keeps the teacher records the teacher's weights in it, so that a later build stopped
    between the teacher and the student (here: ``--only`` the teacher) leaves it visibly stale."""
    uri = str(tmp_path / "bench")
    shutil.copytree(built_local[0], uri)
    store = BenchStore(uri)

    def make_legacy() -> None:
        legacy = store.read_row("indep-vgg13_bn-distilled")
        assert legacy is not None and legacy.pop("parent_sha256")
        store.commit_row(legacy)

    make_legacy()
    wider = {"arch_width": {"vgg13_bn": 0.25}}
    report = build_bench(_config(uri, profile_overrides=wider))
    assert "indep-vgg13_bn-distilled" in report.built, "rebuilt in the teacher's build"

    make_legacy()
    assert build_bench(_config(uri, profile_overrides=wider)).built == [], "teacher unchanged"
    teacher = store.read_row("indep-vgg13_bn")
    student = store.read_row("indep-vgg13_bn-distilled")
    assert teacher is not None and student is not None
    assert student["parent_sha256"] == teacher["sha256"], "the teacher's weights are recorded"
    interrupted = build_bench(_config(uri, only=("indep-vgg13_bn",)))  # the teacher, as before
    assert interrupted.built == ["indep-vgg13_bn"]
    report = build_bench(_config(uri))
    assert "indep-vgg13_bn-distilled" in report.built


def test_a_worker_killed_mid_model_is_retried_from_its_last_epoch(
    tmp_path: Path, own_processes
) -> None:
    uri = str(tmp_path / "killed")
    partial = Path(uri, "partial", "source.pt")
    killed: list[int] = []

    def kill_source_worker_after_an_epoch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not partial.exists():
            time.sleep(0.02)
        for pid in own_processes("ray::build:source"):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    killer = threading.Thread(target=kill_source_worker_after_an_epoch, daemon=True)
    killer.start()
    # A longer source task, so the kill lands after its first epoch checkpoint and before its end.
    longer = {"recipes": {"source": {"train": {"epochs": 8}}}}
    report = build_bench(_config(uri, profile_overrides=longer))
    killer.join(timeout=5)
    assert killed, "the source task was never seen running"
    assert report.retries >= 1
    _assert_complete(uri)
    assert not list(Path(uri, "partial").iterdir()), "committed models leave no partials"
    # The retry trained on from the checkpoint to the model an uninterrupted build makes.
    whole = str(tmp_path / "whole")
    build_bench(_config(whole, profile_overrides=longer, only=("source",)))
    resumed, uninterrupted = (BenchStore(u).read_row("source") or {} for u in (uri, whole))
    assert resumed["resumed_epochs"] >= 1 and uninterrupted["resumed_epochs"] == 0
    assert resumed["sha256"] == uninterrupted["sha256"]


def test_smoke_builds_to_s3_and_resumes(bucket: str) -> None:
    uri = f"s3://{bucket}/smoke"
    first = build_bench(_config(uri))
    assert len(first.built) == SMOKE_IDS
    _assert_complete(uri)
    second = build_bench(_config(uri))
    assert not second.built and len(second.skipped) == SMOKE_IDS
    assert bench.load(uri).model("source") is not None


def test_a_missing_bucket_fails_fast_naming_the_uri(s3_endpoint: str) -> None:
    started = time.monotonic()
    with pytest.raises(NfDistError, match="s3://no-such-bucket-nf/x"):
        build_bench(_config("s3://no-such-bucket-nf/x"))
    assert time.monotonic() - started < 30


def test_a_killed_build_process_resumes_where_it_stopped(tmp_path: Path) -> None:
    import subprocess
    import sys

    uri = tmp_path / "interrupted"
    command = [
        sys.executable,
        "-m",
        "nf_dist.cli",
        "bench",
        "build",
        "--profile",
        "smoke",
        "--output",
        str(uri),
        "--no-progress",
    ]
    process = subprocess.Popen(
        command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and len(list(uri.glob("rows/*.json"))) < 3:
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    # A Ray worker of the killed driver may still be mid-commit for a moment; its row
    # lands whole or not at all. Count once the orphaned session has gone quiet.
    committed = _settled_count(uri, quiet_s=5.0, limit_s=60.0)
    assert 3 <= committed < SMOKE_IDS, "the kill should land mid-build"
    report = build_bench(_config(str(uri)))
    assert len(report.skipped) == committed  # rows are atomic: every one present is whole
    assert len(report.built) + len(report.skipped) == SMOKE_IDS
    _assert_complete(str(uri))


def _settled_count(uri: Path, quiet_s: float, limit_s: float) -> int:
    """Committed rows once none has appeared for ``quiet_s`` seconds."""
    deadline = time.monotonic() + limit_s
    count, since = len(list(uri.glob("rows/*.json"))), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet_s:
        time.sleep(0.2)
        now = len(list(uri.glob("rows/*.json")))
        if now != count:
            count, since = now, time.monotonic()
    return count


def test_fingerprint_from_benchmark_ids_on_the_ray_engine(
    built_local, tmp_path: Path, tiny_gan_uri: str
) -> None:
    """The sharded engine loads its models from a built benchmark by id (the config written
    with the first release's flat keys, which still load)."""
    from dataclasses import replace

    from nf_dist.config import from_dict
    from nf_dist.pipelines.fingerprint import FingerprintJobConfig, run_fingerprint

    uri, _ = built_local
    gan = tiny_gan_uri
    config = from_dict(
        FingerprintJobConfig,
        {
            "output_uri": str(tmp_path / "fp.parquet"),
            "gan_uri": gan,
            "bench_uri": uri,
            "positives": ["source", "ftll"],
            "negatives": ["mirror-source", "indep-vgg13_bn"],
            "engine": "ray",
            "num_shards": 2,
            "cpus_per_shard": 0.5,
            "fingerprint": {"num_candidates": 64, "num_optimised": 32, "steps": 3},
        },
    )
    try:
        run_fingerprint(config, progress=False)
    except NfDistError as exc:  # untrained tiny models: screening may keep nothing
        assert "screening" in str(exc)
    assert Path(str(tmp_path / "fp.progress.json")).exists()  # the run was checkpointed
    bad = replace(config, models=replace(config.models, positives=("nope",)))
    with pytest.raises(NfDistError, match="no model 'nope'"):
        run_fingerprint(bad, progress=False)
    # Screening-only models are resolved from the benchmark like the others.
    unknown_screen = replace(config, models=replace(config.models, screening_negatives=("gone",)))
    with pytest.raises(NfDistError, match="no model 'gone'"):
        run_fingerprint(unknown_screen, progress=False)


def test_evaluate_queries_every_suspect_on_both_engines(
    built_local, tmp_path: Path, cifar_test_uri: str
) -> None:
    import json

    import numpy as np
    import pyarrow.parquet as pq

    from nf_dist.data import load_dataset
    from nf_dist.fingerprint.fingerprint_set import save_fingerprint_set
    from nf_dist.fingerprint.methods import METHODS, FingerprintContext
    from nf_dist.fingerprint.methods.clean import CleanConfig
    from nf_dist.pipelines.evaluate import EvaluateConfig, run_evaluate
    from nf_dist.scoring import aruc

    uri, _ = built_local
    loaded = bench.load(uri)
    generation = ["source", "mirror-source"]
    clean = load_dataset(cifar_test_uri).subset(np.arange(64))
    context = FingerprintContext(
        [loaded.model("source")], [loaded.model("mirror-source")], clean=clean
    )
    fingerprints = METHODS.get("clean")().generate(context, CleanConfig(num_fingerprints=32))
    save_fingerprint_set(fingerprints, str(tmp_path / "clean.parquet"))
    from prometheus_client import REGISTRY

    queried_before = REGISTRY.get_sample_value("nf_eval_suspects_queried_total") or 0.0
    results = {}
    for engine in ("ray", "local"):
        config = EvaluateConfig(
            bench_uri=uri,
            fingerprints={"clean": str(tmp_path / "clean.parquet")},
            generation_models=tuple(generation),
            output_uri=str(tmp_path / engine),
            backend=engine,
            bootstrap=50,
            budgets=(4, 8, 16),
        )
        results[engine] = run_evaluate(config)
    assert results["ray"] == results["local"]
    # Budget curves come from the same answers: the full set's budget is the headline.
    curve = results["ray"]["methods"]["clean"]["budgets"]
    assert set(curve) == {"4", "8", "16", "32"}
    headline = results["ray"]["methods"]["clean"]["heldout"]
    for key in ("aruc", "roc_auc", "tpr_at_1pct_fpr", "aruc_ci95"):
        assert curve["32"][key] == headline[key]
    low, high = curve["4"]["aruc_ci95"]
    assert low <= curve["4"]["aruc"] <= high
    answers = pq.read_table(tmp_path / "ray" / "answers.parquet").to_pylist()
    assert len(answers) == SMOKE_IDS and all(len(a["labels"]) == 32 for a in answers)
    budget_rows = pq.read_table(tmp_path / "ray" / "budgets.parquet").to_pylist()
    assert {(r["budget"], r["split"]) for r in budget_rows} == {
        (b, split) for b in (4, 8, 16, 32) for split in ("heldout", "all")
    }
    from nf_dist.errors import ConfigError

    too_large = EvaluateConfig(
        bench_uri=uri,
        fingerprints={"clean": str(tmp_path / "clean.parquet")},
        output_uri=str(tmp_path / "too-large"),
        backend="local",
        budgets=(10, 50),
    )
    with pytest.raises(ConfigError, match=r"evaluate.budgets: budget 50 .* set 'clean' \(32"):
        run_evaluate(too_large)
    assert not (tmp_path / "too-large").exists(), "a bad budget is refused before any query"
    queried = REGISTRY.get_sample_value("nf_eval_suspects_queried_total") or 0.0
    assert queried - queried_before == 2 * SMOKE_IDS  # every suspect, on both engines
    rows = pq.read_table(tmp_path / "ray" / "rates.parquet").to_pylist()
    assert len(rows) == SMOKE_IDS
    assert all(0 <= r["rate"] <= 1 for r in rows)
    assert next(r for r in rows if r["suspect"] == "source")["rate"] == 1.0
    heldout = [r for r in rows if r["use"] == "heldout"]
    expected = aruc(
        [r["rate"] for r in heldout if r["role"] == "positive"],
        [r["rate"] for r in heldout if r["role"] == "negative"],
    )
    metrics = json.loads((tmp_path / "ray" / "metrics.json").read_text())
    assert metrics["methods"]["clean"]["heldout"]["aruc"] == pytest.approx(expected)
    assert sorted(metrics["split"]["generation_models"]) == sorted(generation)
    margins = pq.read_table(tmp_path / "ray" / "margins.parquet").to_pylist()
    assert {m["suspect"] for m in margins} == {"source", "ftll"}

    # Suspects that chose the settings are scored apart and never in the headline.
    validation = ("rtal", "mirror-ftll")
    chosen_on = run_evaluate(
        replace(config, validation_models=validation, output_uri=str(tmp_path / "val"))
    )
    assert chosen_on["split"]["validation_models"] == sorted(validation)
    assert not set(validation) & set(chosen_on["split"]["heldout_models"])
    val_rows = pq.read_table(tmp_path / "val" / "rates.parquet").to_pylist()
    rest = [r for r in val_rows if r["use"] == "heldout"]
    assert {r["suspect"] for r in val_rows if r["use"] == "validation"} == set(validation)
    assert chosen_on["methods"]["clean"]["heldout"]["aruc"] == pytest.approx(
        aruc(
            [r["rate"] for r in rest if r["role"] == "positive"],
            [r["rate"] for r in rest if r["role"] == "negative"],
        )
    )
    assert "validation" in chosen_on["methods"]["clean"]
    with pytest.raises(ConfigError, match="validation_models: 'source' is also a generation"):
        replace(config, validation_models=("source",))

    from nf_dist.cli import main

    fingerprint_arg = f"clean={tmp_path / 'clean.parquet'}"
    assert main(["report", str(tmp_path / "ray"), "--fingerprints", fingerprint_arg]) == 0
    report = (tmp_path / "ray" / "report.md").read_text()
    heldout = metrics["methods"]["clean"]["heldout"]
    assert heldout["aruc"] <= heldout["aruc_bound"]
    low, high = heldout["aruc_ci95"]
    row = f"| clean | heldout | {heldout['aruc']:.4f} | [{low:.3f}, {high:.3f}] | "
    assert row + f"{heldout['aruc_bound']:.3f} |" in report
    assert "## Query budgets" in report and "B=16" in report
    low, high = curve["16"]["aruc_ci95"]
    assert f"{curve['16']['aruc']:.3f} [{low:.2f}, {high:.2f}]" in report
    for image in ("curves.png", "margins_attack.png", "grid_clean.png", "budgets.png"):
        assert (tmp_path / "ray" / image).stat().st_size > 1000


def test_ablation_runs_every_variant_and_reports_it(
    built_local, tmp_path: Path, tiny_gan_uri: str
) -> None:
    import json

    from nf_dist.config import from_dict
    from nf_dist.pipelines.ablation import AblationConfig, run_ablation, variants
    from nf_dist.pipelines.report import write_report

    uri, _ = built_local
    config = from_dict(
        AblationConfig,
        {
            "gan_uri": tiny_gan_uri,
            "models": {
                "bench_uri": uri,
                "positives": ["source", "ftll"],
                "negatives": ["mirror-source", "indep-vgg13_bn"],
            },
            "output_uri": str(tmp_path / "ablation"),
            "bootstrap": 20,
            "validation_models": ["rtal", "mirror-ftll"],
            "fingerprint": {"num_candidates": 64, "num_optimised": 32, "steps": 4},
        },
    )
    # The smoke models are near chance, so variants may well keep no fingerprint: each variant
    # must then be recorded with its reason rather than stop the ablation.
    rows = run_ablation(config)
    assert [r["variant"] for r in rows] == list(variants(config.fingerprint))
    assert len(rows) == 9
    for row in rows:
        assert row["num_fingerprints"] > 0 or "failure" in row
        if row.get("heldout_aruc") is not None:
            assert 0 <= row["heldout_aruc"] <= 1
    evaluation = tmp_path / "ablation" / "evaluation"
    assert json.loads((evaluation / "ablation.json").read_text()) == rows
    if (evaluation / "metrics.json").exists():
        metrics = json.loads((evaluation / "metrics.json").read_text())
        # scored apart, as in `nf-dist experiment`: the held-out ARUC excludes them
        assert metrics["split"]["validation_models"] == ["mirror-ftll", "rtal"]
        assert not {"mirror-ftll", "rtal"} & set(metrics["split"]["heldout_models"])
        assert "Ablation" in write_report(str(evaluation), str(evaluation)).read_text()


def test_experiment_runs_every_method_evaluates_and_reports(
    built_local, tmp_path: Path, cifar_test_uri: str, tiny_gan_uri: str, caplog
) -> None:
    """`nf-dist experiment` on the smoke bench: every method, evaluation, stealth, a re-screen,
    resume."""
    import json

    import pyarrow.parquet as pq

    from nf_dist.cli import main
    from nf_dist.config import dump_yaml, from_dict
    from nf_dist.pipelines.experiment import ExperimentConfig, run_experiment
    from nf_dist.scoring import aruc

    uri, _ = built_local
    train_uri = str(Path(cifar_test_uri).with_name("train.parquet"))
    raw = {
        "output_uri": str(tmp_path / "exp"),
        "report_dir": str(tmp_path / "exp" / "report"),
        "data": {
            "train_uri": train_uri,
            "test_uri": cifar_test_uri,
            "half_size": 600,
            "finetune_size": 200,
            "test_size": 200,
        },
        "gans": {"tiny": tiny_gan_uri},
        "models": {
            "bench_uri": uri,
            "positives": ["source", "ftll"],
            "negatives": ["mirror-source", "indep-vgg13_bn"],
        },
        "bootstrap": 20,
        "sets": {
            "naturalfinger": {
                "method": "naturalfinger",
                "gan": "tiny",
                "config": {"num_candidates": 64, "num_optimised": 32, "steps": 4},
            },
            # the same descent screened leniently and stored surest first: no descent again
            "naturalfinger-rescreened": {
                "method": "naturalfinger",
                "gan": "tiny",
                "rescreen_of": "naturalfinger",
                "config": {
                    "num_candidates": 64,
                    "num_optimised": 32,
                    "steps": 4,
                    "screen_negatives": "not_original",
                    "screen_transforms": ["identity"],
                    "screen_order": "margin",
                },
            },
            "naturalfinger-again": {
                "method": "naturalfinger",
                "gan": "tiny",
                "config": {"num_candidates": 64, "num_optimised": 32, "steps": 4, "seed": 1},
            },
            "clean": {"method": "clean", "config": {"num_fingerprints": 30}},
            "akh": {"method": "akh", "config": {"num_fingerprints": 30}},
            "ipguard": {"method": "ipguard", "config": {"num_fingerprints": 20, "steps": 5}},
            "metav": {"method": "metav", "config": {"num_fingerprints": 20, "steps": 5}},
            "metafinger": {
                "method": "metafinger",
                "config": {"num_fingerprints": 20, "num_seeds": 20, "epochs": 1},
            },
        },
        "stealth": {"seeds": [0, 1], "detector": {"epochs": 1}},
        "budgets": [5, 10],
        # Two generative sets on Ray actors that each take the whole 2-CPU test cluster: the
        # second can only start if the first set's engine gave its CPUs back.
        "sharding": {"backend": "ray", "num_shards": 2, "cpus_per_shard": 1.0},
    }
    config = from_dict(ExperimentConfig, raw)
    with caplog.at_level(logging.INFO, logger="nf_dist.fingerprint.naturalfinger.progress"):
        result = run_experiment(config, progress=False)
    made = {n for n, r in result["sets"].items() if "failure" not in r}
    resumed = [
        r for r in caplog.records if "resuming the latent optimisation at step 4" in r.message
    ]
    assert len(resumed) == 1, "the re-screened set started from the finished descent"
    assert result["sets"]["naturalfinger-rescreened"]["rescreen_of"] == "naturalfinger"
    strict = result["sets"]["naturalfinger"].get("num_fingerprints", 0)
    assert result["sets"]["naturalfinger-rescreened"]["num_fingerprints"] >= strict
    assert {"clean", "akh", "ipguard", "metav"} <= made  # these never screen everything away
    deadline = time.monotonic() + 20  # a killed actor frees its CPUs asynchronously
    while (held := ray.cluster_resources()["CPU"] - ray.available_resources()["CPU"]) > 0:
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert held == 0.0, "every set's engine released its actors"
    for record in result["sets"].values():
        assert record["num_fingerprints"] > 0 or record["failure"]
    rows = pq.read_table(tmp_path / "exp" / "evaluation" / "rates.parquet").to_pylist()
    assert {r["method"] for r in rows} == made
    assert all(0 <= r["rate"] <= 1 for r in rows)
    for name in made:  # every method's labels are its source's answers
        assert (
            next(r for r in rows if r["method"] == name and r["suspect"] == "source")["rate"] == 1
        )
        heldout = [r for r in rows if r["method"] == name and r["use"] == "heldout"]
        expected = aruc(
            [r["rate"] for r in heldout if r["role"] == "positive"],
            [r["rate"] for r in heldout if r["role"] == "negative"],
        )
        assert result["methods"][name]["heldout"]["aruc"] == pytest.approx(expected)
    stealth = json.loads((tmp_path / "exp" / "evaluation" / "stealth.json").read_text())
    assert set(stealth["detection_rate"]) == made | {"clean test images"}
    for entry in stealth["detection_rate"].values():
        assert len(entry["per_seed"]) == 2 and 0 <= entry["mean"] <= 1
    report = (tmp_path / "exp" / "report" / "report.md").read_text()
    assert "Stealthiness" in report and "Fingerprint sets" in report
    assert f"{result['methods']['clean']['heldout']['aruc']:.4f}" in report
    akh_budgets = result["methods"]["akh"]["budgets"]
    # Budgets above the smallest set (the tiny GAN's NaturalFinger set may be small) are dropped.
    assert set(akh_budgets) == {str(b) for b in result["budgets_evaluated"]} | {"30"}
    assert set(result["budgets_evaluated"]) <= {5, 10}
    assert akh_budgets["30"]["aruc"] == result["methods"]["akh"]["heldout"]["aruc"]

    # A second run through the CLI reuses every set that was made (same records, no regeneration)
    # and the stealth detectors (same adversary, data and settings: the same rates).
    saved = [tmp_path / "exp" / "stealth" / f"detector-seed{seed}.safetensors" for seed in (0, 1)]
    before = {n: (tmp_path / "exp" / "sets" / f"{n}.parquet").stat().st_mtime_ns for n in made}
    before_detectors = [path.stat().st_mtime_ns for path in saved]
    (tmp_path / "exp.yaml").write_text(dump_yaml(config))
    assert main(["experiment", "--config", str(tmp_path / "exp.yaml"), "--no-progress"]) == 0
    after = {n: (tmp_path / "exp" / "sets" / f"{n}.parquet").stat().st_mtime_ns for n in made}
    assert before == after
    assert [path.stat().st_mtime_ns for path in saved] == before_detectors
    again = json.loads((tmp_path / "exp" / "evaluation" / "stealth.json").read_text())
    assert again["detection_rate"] == stealth["detection_rate"]


@pytest.mark.parametrize(
    ("rescreened", "match"),
    [
        ({"rescreen_of": "later"}, "must name a set listed before"),
        ({"rescreen_of": "nf", "config": {"lr": 2.0}}, "differs from 'nf' in 'lr'"),
        ({"rescreen_of": "clean", "config": {}}, "only a NaturalFinger set"),
        ({"gan": "untrained"}, "gans.untrained .* has no checkpoint; train it first"),
    ],
)
def test_a_bad_rescreen_or_an_untrained_gan_is_refused_before_any_work(
    built_local, tiny_gan_uri: str, tmp_path: Path, rescreened: dict, match: str
) -> None:
    """Checked before any work, as is a set whose GAN was never trained."""
    from nf_dist.config import from_dict
    from nf_dist.pipelines.experiment import ExperimentConfig, validate

    nf = {"method": "naturalfinger", "gan": "tiny", "config": {"steps": 4}}
    spec = {
        **nf,
        **rescreened,
        "config": {"screen_order": "margin", **rescreened.get("config", nf["config"])},
    }
    config = from_dict(
        ExperimentConfig,
        {
            "gans": {"tiny": tiny_gan_uri, "untrained": str(tmp_path / "no-gan")},
            "models": {
                "bench_uri": built_local[0],
                "positives": ["source", "ftll"],
                "negatives": ["mirror-source", "indep-vgg13_bn"],
            },
            "sets": {
                "nf": nf,
                "clean": {"method": "clean", "config": {}},
                "again": spec,
                "later": nf,
            },
        },
    )
    with pytest.raises(ConfigError, match=f"sets.again.*{match}"):
        validate(config)


def test_a_loaded_model_is_checked_against_the_manifest_not_its_sidecar(
    built_local, tmp_path: Path
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    uri, _ = built_local
    copy = tmp_path / "bench"
    shutil.copytree(uri, copy)
    models = copy / "models"
    assert bench.load(str(copy)).model("ftll") is not None
    # Swapped weights whose sidecar was rewritten to match them.
    shutil.copy(models / "rtal.safetensors", models / "ftll.safetensors")
    sidecar = json.loads((models / "ftll.json").read_text())
    sidecar["sha256"] = json.loads((models / "rtal.json").read_text())["sha256"]
    (models / "ftll.json").write_text(json.dumps(sidecar))
    with pytest.raises(NfDistError, match="sha256 its manifest records"):
        bench.load(str(copy)).model("ftll")
    # The same swap with a sidecar that simply lost its sha256.
    sidecar.pop("sha256")
    (models / "ftll.json").write_text(json.dumps(sidecar))
    with pytest.raises(NfDistError, match="sha256 its manifest records"):
        bench.load(str(copy)).model("ftll")
    # A role flipped in the manifest alone.
    table = pq.read_table(copy / "manifest.parquet").to_pylist()
    for row in table:
        if row["id"] == "rtal":
            row["role"] = "negative"
    manifest = pa.Table.from_pylist(table, schema=MANIFEST_SCHEMA)
    pq.write_table(manifest, copy / "manifest.parquet")
    with pytest.raises(NfDistError, match="disagree on role"):
        bench.load(str(copy)).model("rtal")


def test_a_process_outside_this_session_is_never_a_victim(own_processes) -> None:
    """A process named like a build worker but not started by this session (reparented away
    from it) is invisible to the kill tests' search."""
    started = subprocess.run(
        ["bash", "-c", "exec -a 'ray::build:source' sleep 60 </dev/null >/dev/null 2>&1 & echo $!"],
        capture_output=True,
        text=True,
        start_new_session=True,
    )
    stranger = int(started.stdout.strip())
    try:
        assert stranger not in own_processes("ray::build:source")
    finally:
        os.kill(stranger, signal.SIGKILL)
