"""The cluster path, for real: `ray start --head` on 127.0.0.1 with token authentication, the smoke
pipeline submitted with the `ray job submit` CLI (build the smoke bench to the loopback S3 server,
train a tiny GAN, fingerprint, evaluate, report), artefacts and logs checked, the head stopped.
The whole pipeline is `slow` (`make slow`; CI runs it); one job of it runs in the default suite.

The head runs in its own process group and temp dir, so stopping it leaves any other Ray on the
machine (the session's embedded one) alone.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.submit, pytest.mark.s3]

ROOT = Path(__file__).resolve().parents[2]
DATA = (ROOT.parent / "shared" / "data").resolve()
RAY = str(Path(sys.executable).with_name("ray"))


@pytest.fixture(scope="module")
def head(
    s3_endpoint: str, ray_node_starter: Callable[..., Any]
) -> Iterator[tuple[str, dict[str, str]]]:
    """A Ray head on 127.0.0.1 with token auth; yields its job API address and the client env."""
    temp_dir = Path(tempfile.mkdtemp(prefix="rs", dir="/tmp"))  # short: Ray's socket paths
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "NF_DIST_CACHE": str(temp_dir / "cache"),
    }
    env.pop("RAY_ADDRESS", None)

    def job_api_answers(node: Any) -> bool:
        listed = subprocess.run(
            [RAY, "job", "list", "--address", _job_api(node)],
            env=env,
            capture_output=True,
            text=True,
        )
        return listed.returncode == 0

    node = ray_node_starter(
        temp_dir, env, job_api_answers, num_cpus=2, options=("--dashboard-host=127.0.0.1",)
    )
    try:
        yield _job_api(node), env
    finally:
        node.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _job_api(node: Any) -> str:
    return f"http://127.0.0.1:{node.ports['dashboard-port']}"


def _submit(address: str, env: dict[str, str], job_id: str, entrypoint: list[str]) -> str:
    """Submit with the real CLI, wait for a final state, return the job's logs."""
    runtime_env = {"excludes": [".git", ".venv", "runs", "*.egg-info"]}
    command = [
        RAY,
        "job",
        "submit",
        "--address",
        address,
        "--submission-id",
        job_id,
        "--working-dir",
        str(ROOT),
        "--runtime-env-json",
        json.dumps(runtime_env),
        "--no-wait",
        "--",
        *entrypoint,
    ]
    deadline = time.monotonic() + 120
    while True:  # the head's job agent may still be starting ("No available agent")
        submitted = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
        if submitted.returncode == 0 or "No available agent" not in submitted.stderr:
            break
        if time.monotonic() > deadline:
            break
        time.sleep(3)
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    deadline, status = time.monotonic() + 600, ""
    while time.monotonic() < deadline:
        printed = subprocess.run(
            [RAY, "job", "status", job_id, "--address", address],
            env=env,
            capture_output=True,
            text=True,
        ).stdout
        status = re.sub(r"\x1b\[[0-9;]*m", "", printed).upper()
        if any(state in status for state in ("SUCCEEDED", "FAILED", "STOPPED")):
            break
        time.sleep(2)
    logs = subprocess.run(
        [RAY, "job", "logs", job_id, "--address", address], env=env, capture_output=True, text=True
    ).stdout
    assert "SUCCEEDED" in status, f"{job_id}: {status}\n{logs[-4000:]}"
    return logs


def test_a_job_runs_through_ray_job_submit_and_records_its_machine(
    head: tuple[str, dict[str, str]], bucket: str
) -> None:
    """The default suite's twin of the pipeline below: one job (the smoke GAN) through the real
    CLI, its checkpoint and run record on S3, the record naming the machine it ran on."""
    import s3fs
    import yaml

    address, env = head
    gan = f"s3://{bucket}/twin/gan"
    logs = _submit(
        address,
        env,
        "nf-gan-twin",
        [
            "python",
            "jobs/train_gan.py",
            "--smoke",
            "--no-progress",
            f"--set=output_uri={gan}",
            f"--set=data.train_uri={DATA / 'cifar10' / 'train.parquet'}",
            f"--set=data.test_uri={DATA / 'cifar10' / 'test.parquet'}",
        ],
    )
    assert f"saved {gan}" in logs
    fs = s3fs.S3FileSystem()
    assert fs.exists(f"{bucket}/twin/gan.safetensors")
    record = yaml.safe_load(fs.cat_file(f"{bucket}/twin/gan.config.yaml"))
    assert record["machine"]["cpu_model"] and "avx2" in record["machine"]["cpu_flags"]
    assert record["machine"]["precisions_resolved"]["auto on cpu"] in ("fp32", "bf16")


@pytest.mark.slow  # 156 s on 2 AVX2 cores; its twin above runs in the default suite
def test_the_smoke_pipeline_runs_through_ray_job_submit(
    head: tuple[str, dict[str, str]], bucket: str
) -> None:
    import s3fs

    address, env = head
    data = [
        f"--set=data.train_uri={DATA / 'cifar10' / 'train.parquet'}",
        f"--set=data.test_uri={DATA / 'cifar10' / 'test.parquet'}",
    ]
    root = f"s3://{bucket}"
    bench, gan = f"{root}/bench/smoke", f"{root}/gan/gan"
    fingerprint = f"{root}/fingerprints/naturalfinger.parquet"
    logs = _submit(
        address,
        env,
        "nf-build-bench",
        [
            "python",
            "jobs/build_bench.py",
            "--smoke",
            f"--output={bench}",
            "--no-progress",
            *data,
            f"--set=data.query_uri={DATA / 'tinyimagenet' / 'train.parquet'}",
        ],
    )
    assert f"bench smoke at {bench}: built 12" in logs
    logs = _submit(
        address,
        env,
        "nf-gan",
        [
            "python",
            "jobs/train_gan.py",
            "--smoke",
            "--no-progress",
            f"--set=output_uri={gan}",
            *data,
        ],
    )
    assert f"saved {gan}" in logs
    logs = _submit(
        address,
        env,
        "nf-fingerprint",
        [
            "python",
            "jobs/fingerprint.py",
            "--smoke",
            "--no-progress",
            f"--set=models.bench_uri={bench}",
            f"--set=gan_uri={gan}",
            f"--set=output_uri={fingerprint}",
        ],
    )
    assert f"fingerprints to {fingerprint}" in logs
    evaluation = f"{root}/evaluation"
    logs = _submit(
        address,
        env,
        "nf-evaluate",
        [
            "python",
            "jobs/evaluate.py",
            "--smoke",
            f"--set=bench_uri={bench}",
            f"--set=fingerprints.naturalfinger={fingerprint}",
            f"--set=output_uri={evaluation}",
        ],
    )
    assert "naturalfinger  heldout  ARUC" in logs
    logs = _submit(
        address,
        env,
        "nf-report",
        [
            "python",
            "jobs/report.py",
            "--smoke",
            f"--set=evaluation_uri={evaluation}",
            f"--set=output_uri={root}/report",
            f"--set=fingerprints.naturalfinger={fingerprint}",
        ],
    )

    fs = s3fs.S3FileSystem()
    for key in (
        "bench/smoke/manifest.parquet",
        "gan/gan.safetensors",
        "gan/gan.config.yaml",
        "fingerprints/naturalfinger.parquet",
        "fingerprints/naturalfinger.config.yaml",
        "evaluation/metrics.json",
        "evaluation/rates.parquet",
        "evaluation/config.yaml",
        "report/report.md",
        "report/curves.png",
    ):
        assert fs.exists(f"{bucket}/{key}"), key
    metrics = json.loads(fs.cat_file(f"{bucket}/evaluation/metrics.json"))
    assert 0.0 <= metrics["methods"]["naturalfinger"]["heldout"]["aruc"] <= 1.0
    resolved = fs.cat_file(f"{bucket}/fingerprints/naturalfinger.config.yaml").decode()
    assert f"gan_uri: {gan}" in resolved and "nf_dist_version" in resolved


def test_the_job_api_refuses_a_client_without_the_token(
    head: tuple[str, dict[str, str]],
) -> None:
    address, env = head
    anonymous = {k: v for k, v in env.items() if k not in ("RAY_AUTH_TOKEN", "RAY_AUTH_MODE")}
    anonymous["RAY_AUTH_TOKEN_PATH"] = "/nonexistent-nf-dist-token"
    listed = subprocess.run(
        [RAY, "job", "list", "--address", address],
        env={**anonymous, "HOME": tempfile.mkdtemp()},
        capture_output=True,
        text=True,
    )
    assert listed.returncode != 0
    wrong = {**env, "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    listed = subprocess.run(
        [RAY, "job", "list", "--address", address], env=wrong, capture_output=True, text=True
    )
    assert listed.returncode != 0
