"""Verifying deployed suspects for real: ``nf-dist serve`` on a free loopback port (its own
process, stopped by its own PID), ``nf-dist verify --endpoint`` against it, faults injected,
tokens kept secret, resumed runs, the same verdicts from every model format."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from nf_dist.cli import main
from nf_dist.fingerprint.fingerprint_set import (
    FingerprintSet,
    load_fingerprint_set,
    save_fingerprint_set,
)
from nf_dist.models.checkpoint import load_classifier
from nf_dist.models.inference import predict
from nf_dist.pipelines.verify import VerifyConfig, calibrate
from nf_dist.verification.http import EndpointConfig, HttpOracle

TOKEN_ENV = "NF_TEST_SUSPECT_TOKEN"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve(
    model: str, *flags: str, env: dict[str, str] | None = None
) -> tuple[str, subprocess.Popen]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "nf_dist.cli", "serve", model, "--port", str(port), *flags],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"nf-dist serve exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return url, process
        except httpx.TransportError:
            time.sleep(0.3)
    process.kill()
    pytest.fail("nf-dist serve did not come up")


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)  # the server this test started, by its own PID
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="module")
def world(tiny_zoo: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A 40-image set whose expected labels are the source's, the source and the independents."""
    folder = tmp_path_factory.mktemp("http")
    source, _ = load_classifier(tiny_zoo["positive_uris"][0])
    images = np.random.default_rng(3).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    labels = predict(source, images)
    fingerprints = str(folder / "set.parquet")
    save_fingerprint_set(FingerprintSet(images, labels, (labels + 1) % 10), fingerprints)
    return {
        "set": fingerprints,
        "source": tiny_zoo["positive_uris"][0],
        "independent": tiny_zoo["negative_uris"][0],
        "calibration": tiny_zoo["negative_uris"],
        "folder": folder,
        "labels": labels,
    }


@pytest.fixture(scope="module")
def served(world: dict) -> Iterator[str]:
    url, process = _serve(world["source"])
    yield url
    _stop(process)


def _verify(world: dict, *args: str, capsys: pytest.CaptureFixture) -> tuple[int, dict | None]:
    """Run ``nf-dist verify``; the JSON result, or None after an error (whose message is put
    back on stderr for the caller)."""
    capsys.readouterr()
    code = main(["verify", world["set"], *args, "--json", "--calibrate", *world["calibration"]])
    printed = capsys.readouterr()
    sys.stderr.write(printed.err)
    return code, json.loads(printed.out) if code == 0 else None


def test_the_same_verdict_from_checkpoint_onnx_torchscript_and_http(
    world: dict, served: str, capsys: pytest.CaptureFixture
) -> None:
    source, _ = load_classifier(world["source"])
    example = torch.rand(4, 3, 32, 32)
    onnx_path = world["folder"] / "source.onnx"
    torch.onnx.export(
        source,
        (example,),
        str(onnx_path),
        input_names=["x"],
        dynamic_shapes={"x": {0: torch.export.Dim("n")}},
    )
    script_path = world["folder"] / "source.ts"
    torch.jit.trace(source, example).save(str(script_path))
    rows = {}
    for name, args in {
        "checkpoint": [world["source"]],
        "onnx": [str(onnx_path)],
        "torchscript": [str(script_path)],
        "http": ["--endpoint", f"{served}/predict"],
    }.items():
        code, result = _verify(world, *args, capsys=capsys)
        assert code == 0 and result is not None, name
        rows[name] = result["suspects"][0]
    rates = {name: row["matching_rate"] for name, row in rows.items()}
    assert set(rates.values()) == {1.0}, rates
    assert len({row["p_value"] for row in rows.values()}) == 1
    assert len({row["stolen"] for row in rows.values()}) == 1


def test_faults_lose_nothing_and_count_nothing_twice(
    world: dict, capsys: pytest.CaptureFixture
) -> None:
    flags = ["--fail-429", "0.2", "--fail-500", "0.2", "--malformed", "0.1", "--seed", "1"]
    url, process = _serve(world["source"], *flags)
    evidence = world["folder"] / "faults"
    try:
        code, result = _verify(
            world, "--endpoint", f"{url}/predict", "--evidence", str(evidence), capsys=capsys
        )
        stats = httpx.get(f"{url}/stats").json()
    finally:
        _stop(process)
    assert code == 0 and result is not None
    assert result["suspects"][0]["matching_rate"] == 1.0
    (log,) = evidence.glob("*.queries.jsonl")
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    records = [line for line in lines if "key" in line]
    keys = [r["key"] for r in records]
    assert len(keys) == len(set(keys)), "an image answered twice"
    assert sum(not r["cover"] for r in records) == 40 and sum(r["cover"] for r in records) == 40
    assert stats["images_answered"] == len(records), "the server answered each image once"
    assert sum(stats["faults"].values()) > 0, "faults were injected"
    # Every image on the wire is counted, retries included: the server saw each request.
    sent = sum(line["sent"] for line in lines if "sent" in line)
    assert sent > len(records) and sent == stats["images_received"]
    record = json.loads(next(evidence.glob("*[!s].json")).read_text())
    assert record["suspect"]["query_log_sha256"] and len(record["queries"]) == 40
    counts = {k: record["suspect"][k] for k in ("images_sent", "images_retried", "images_answered")}
    retried = sum(line["sent"] for line in lines if line.get("retry"))
    assert counts == {"images_sent": sent, "images_retried": retried, "images_answered": 80}
    assert record["decision"]["matches"] == 40


def test_a_run_cut_short_resumes_without_sending_anything_twice(
    world: dict, served: str, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    config = tmp_path / "verify.yaml"
    endpoint = {"url": f"{served}/predict", "budget": 40, "batch_size": 8}
    config.write_text(json.dumps({"suspects": [{"endpoint": endpoint}]}))
    before = httpx.get(f"{served}/stats").json()["images_answered"]
    args = ["--config", str(config), "--evidence", str(tmp_path / "ev")]
    assert _verify(world, *args, capsys=capsys)[0] == 2  # the budget is smaller than the run
    endpoint["budget"] = 200
    config.write_text(json.dumps({"suspects": [{"endpoint": endpoint}], "sequential": True}))
    code, result = _verify(world, *args, capsys=capsys)
    assert code == 0 and result is not None
    first = httpx.get(f"{served}/stats").json()["images_answered"] - before
    code, result = _verify(world, *args, capsys=capsys)  # the same run again: all answered
    assert code == 0 and result is not None
    assert httpx.get(f"{served}/stats").json()["images_answered"] - before == first


def test_the_token_is_used_and_never_written(
    world: dict, capsys: pytest.CaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cr3t-" + os.urandom(8).hex()
    url, process = _serve(world["source"], "--token-env", TOKEN_ENV, env={TOKEN_ENV: secret})
    try:
        evidence = tmp_path / "ev"
        endpoint = ["--endpoint", f"{url}/predict", "--evidence", str(evidence)]
        assert _verify(world, *endpoint, capsys=capsys)[0] == 2  # no token: refused
        monkeypatch.setenv(TOKEN_ENV, secret)
        capsys.readouterr()
        code = main(
            [
                "verify",
                world["set"],
                "--calibrate",
                *world["calibration"],
                *endpoint,
                "--token-env",
                TOKEN_ENV,
                "--json",
            ]
        )
        printed = capsys.readouterr()
    finally:
        _stop(process)
    # With the token every fingerprint is answered, as the source answers it. (The verdict is
    # not asserted: on this set of random-noise images it hangs on how the tiny independent
    # models happen to answer noise, not on the token.)
    assert code == 0
    assert json.loads(printed.out)["suspects"][0]["matching_rate"] == 1.0
    written = "".join(p.read_text() for p in evidence.rglob("*") if p.is_file())
    assert secret not in printed.out + printed.err + written


def test_bad_answers_and_bad_suspects_are_clear_errors(
    world: dict, served: str, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    import uvicorn

    from nf_dist.verification.server import create_app

    port = _free_port()
    app = create_app(lambda images: np.full(len(images), 12))  # labels outside 0..9
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        code, _ = _verify(world, "--endpoint", f"http://127.0.0.1:{port}/predict", capsys=capsys)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert code == 2 and "outside [0, 10)" in capsys.readouterr().err

    nobody = f"http://127.0.0.1:{_free_port()}/predict"
    config = tmp_path / "unreachable.yaml"
    unreachable = {"url": nobody, "max_retries": 1, "backoff_s": 0.01}
    config.write_text(json.dumps({"suspects": [{"endpoint": unreachable}]}))
    assert _verify(world, "--config", str(config), capsys=capsys)[0] == 2
    assert "did not answer after 2 attempts" in capsys.readouterr().err

    source, _ = load_classifier(world["source"])
    wide = world["folder"] / "wide.onnx"
    torch.onnx.export(source, (torch.rand(1, 3, 64, 64),), str(wide), input_names=["x"])
    assert _verify(world, str(wide), capsys=capsys)[0] == 2
    assert "declare the suspect's preprocessing.size" in capsys.readouterr().err


def test_a_checkpoint_whose_name_holds_a_dot_is_verified(
    world: dict, capsys: pytest.CaptureFixture
) -> None:
    import hashlib

    from nf_dist.models.checkpoint import save_classifier
    from nf_dist.verification.files import SuspectFile, open_suspect

    source, _ = load_classifier(world["source"])
    stem = save_classifier(source, str(world["folder"] / "prune_0.6"))  # as zoo ids are named
    weights = Path(stem + ".safetensors").read_bytes()
    opened = open_suspect(SuspectFile(stem))
    assert opened.identity == f"sha256:{hashlib.sha256(weights).hexdigest()}"
    code, result = _verify(world, stem, capsys=capsys)
    assert code == 0 and result is not None
    assert result["suspects"][0]["matching_rate"] == 1.0


def test_a_saved_null_holds_only_for_its_own_set(
    world: dict, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    null = tmp_path / "null.json"
    code, fitted = _verify(world, world["source"], "--save-null", str(null), capsys=capsys)
    assert code == 0 and fitted is not None
    assert json.loads(null.read_text())["fingerprints_sha256"]
    capsys.readouterr()
    assert main(["verify", world["set"], world["source"], "--null", str(null), "--json"]) == 0
    reused = json.loads(capsys.readouterr().out)
    assert reused["suspects"] == fitted["suspects"]

    other = str(tmp_path / "other.parquet")
    images = np.random.default_rng(4).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    labels = predict(load_classifier(world["source"])[0], images)
    save_fingerprint_set(FingerprintSet(images, labels, (labels + 1) % 10), other)
    assert main(["verify", other, world["source"], "--null", str(null)]) == 2
    assert "calibrated on another fingerprint set" in capsys.readouterr().err


def test_a_rerun_into_the_same_evidence_says_it_reused_the_answers(
    world: dict,
    served: str,
    capsys: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    evidence = tmp_path / "ev"
    args = ["--endpoint", f"{served}/predict", "--evidence", str(evidence)]
    assert _verify(world, *args, capsys=capsys)[0] == 0
    (record_path,) = evidence.glob("*.json")
    assert json.loads(record_path.read_text())["suspect"]["answers_resumed"] == 0
    # Whatever serves the URL now is not asked again: the record and the log say so.
    with caplog.at_level(logging.WARNING, logger="nf_dist.pipelines.verify"):
        assert _verify(world, *args, capsys=capsys)[0] == 0
    assert "use a fresh evidence directory" in caplog.text
    assert json.loads(record_path.read_text())["suspect"]["answers_resumed"] == 80  # with cover
    assert "80 answers resumed" in record_path.with_suffix(".md").read_text()


@pytest.mark.parametrize("made_it", ["negatives", "screening_negatives"])
def test_calibrating_on_a_generation_negative_warns_that_the_null_is_too_lenient(
    world: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture, made_it: str
) -> None:
    fingerprints = load_fingerprint_set(world["set"])
    fingerprints.info[made_it] = [world["calibration"][0]]  # as if it generated or screened it
    generated = str(tmp_path / "generated.parquet")
    save_fingerprint_set(fingerprints, generated)
    with caplog.at_level(logging.WARNING, logger="nf_dist.pipelines.verify"):
        calibrate(
            VerifyConfig(fingerprints=generated, calibration=world["calibration"]),
            load_fingerprint_set(generated),
        )
    warned = [r.getMessage() for r in caplog.records if "too lenient" in r.getMessage()]
    assert len(warned) == 1 and world["calibration"][0] in warned[0]


def test_looks_of_any_size_send_the_cover_the_budget_was_checked_for(
    world: dict, served: str
) -> None:
    images = load_fingerprint_set(world["set"]).images  # 40 fingerprints
    cover = np.random.default_rng(5).integers(0, 256, (100, 32, 32, 3), dtype=np.uint8)
    # 40 * 0.3 = 12 covers in all; rounding each look of 3 (0.9 -> 1) would send 14.
    config = EndpointConfig(url=f"{served}/predict", cover_ratio=0.3, budget=52)
    oracle = HttpOracle(config, cover)
    try:
        for start in range(0, 40, 3):
            oracle(images[start : start + 3])
    finally:
        oracle.close()
    assert oracle.sent == 52


def test_a_fingerprint_that_is_also_a_clean_image_is_never_sent_as_cover(
    world: dict, served: str, tmp_path: Path
) -> None:
    images = load_fingerprint_set(world["set"]).images[:10]
    config = EndpointConfig(url=f"{served}/predict", cover_ratio=1.0, budget=20)
    oracle = HttpOracle(config, images.copy(), str(tmp_path / "log.jsonl"))  # cover = the set
    try:
        answers = oracle(images)
    finally:
        oracle.close()
    assert len(answers) == 10 and oracle.sent == 10, "no cover was left to send"
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert not any(line["cover"] for line in lines if "key" in line)
