"""Fault tolerance at cluster scale on one machine: a two-node Ray cluster on loopback (``ray start
--head`` and a second ``ray start --address`` with its own CPU), the smoke FingerBench built to
the loopback S3 server, the worker node killed while it trains a model. The build finishes on the
head: every model once, every checksum valid.

The nodes use the loopback addresses 127.0.0.2 (head) and 127.0.0.3 (worker): Ray swaps
"127.0.0.1" for the machine's network address when it runs as a multi-node cluster, and refuses
a second node when told to stay on 127.0.0.1.

Both nodes run in their own process groups and temp dirs, started and stopped by this test; the
session's embedded Ray and anything else on the machine are never touched.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.submit, pytest.mark.s3]

RAY = str(Path(sys.executable).with_name("ray"))
NF_DIST = [sys.executable, "-m", "nf_dist.cli"]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(args: list[str], env: dict[str, str], temp_dir: str, ip: str) -> subprocess.Popen:
    """``ray start ... --block`` in its own process group, every port chosen free."""
    ports = [
        f"--dashboard-agent-listen-port={_free_port()}",
        f"--dashboard-agent-grpc-port={_free_port()}",
        f"--metrics-export-port={_free_port()}",
        f"--runtime-env-agent-port={_free_port()}",
        f"--node-manager-port={_free_port()}",
        f"--object-manager-port={_free_port()}",
        # A head's Ray Client server defaults to 10001, which another Ray on this machine (or
        # the job-submit test's head, still shutting down) may hold.
        f"--ray-client-server-port={_free_port()}",
    ]
    command = [
        RAY,
        "start",
        "--block",
        f"--node-ip-address={ip}",
        "--num-cpus=1",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
        *ports,
        *args,
    ]
    return subprocess.Popen(
        command,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def _tree(root: int) -> list[tuple[int, str]]:
    """(pid, command line) of ``root`` and its descendants: one node's own processes."""
    found, frontier, seen = [], [root], {root}
    while frontier:
        listing = subprocess.run(
            ["ps", "-o", "pid=,args=", "--ppid", ",".join(map(str, frontier))],
            capture_output=True,
            text=True,
        ).stdout
        frontier = []
        for line in listing.splitlines():
            pid_text, _, args = line.strip().partition(" ")
            if int(pid_text) not in seen:
                seen.add(int(pid_text))
                frontier.append(int(pid_text))
                found.append((int(pid_text), args))
    return found


@pytest.fixture
def cluster(s3_endpoint: str) -> Iterator[tuple[str, dict[str, str], subprocess.Popen]]:
    """A head and a worker node on 127.0.0.1 with token auth; yields the GCS address, the
    client environment and the worker node's ``ray start`` process."""
    temp_dir = tempfile.mkdtemp(prefix="r2", dir="/tmp")  # short: Ray's socket paths are limited
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1",  # a multi-node cluster (see the docstring)
        "NF_DIST_CACHE": str(Path(temp_dir) / "cache"),
    }
    env.pop("RAY_ADDRESS", None)
    port = _free_port()
    address = f"127.0.0.2:{port}"
    head = _start(
        ["--head", f"--port={port}", "--include-dashboard=false"],
        env,
        str(Path(temp_dir) / "head"),
        "127.0.0.2",
    )
    worker = None
    try:
        _wait_for_nodes(address, env, 1, head)
        worker = _start([f"--address={address}"], env, str(Path(temp_dir) / "worker"), "127.0.0.3")
        _wait_for_nodes(address, env, 2, head)
        yield address, env, worker
    finally:
        if worker is not None:
            _stop(worker)
        _stop(head)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _wait_for_nodes(address: str, env: dict[str, str], count: int, head: subprocess.Popen) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if head.poll() is not None:
            pytest.fail(f"ray start --head exited with {head.returncode}")
        status = subprocess.run(
            [RAY, "status", f"--address={address}"], env=env, capture_output=True, text=True
        )
        if status.returncode == 0 and len(re.findall(r"node_", status.stdout)) >= count:
            return
        time.sleep(2)
    pytest.fail(f"the cluster at {address} did not reach {count} nodes")


# 94 s with its cluster on 2 AVX2 cores; the default suite's twin is test_bench_build's
# test_a_killed_build_process_resumes_where_it_stopped (one node, the build process killed)
@pytest.mark.slow
def test_a_worker_node_killed_mid_build_loses_nothing(
    cluster: tuple[str, dict[str, str], subprocess.Popen], bucket: str
) -> None:
    from nf_dist import bench
    from nf_dist.bench.store import BenchStore

    address, env, worker = cluster
    output = f"s3://{bucket}/smoke"
    build = subprocess.Popen(
        [
            *NF_DIST,
            "bench",
            "build",
            "--smoke",
            "--address",
            address,
            "--output",
            output,
            "--max-retries",
            "3",
            "--no-progress",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and time.monotonic() < deadline and build.poll() is None:
        on_worker = [pid for pid, args in _tree(worker.pid) if "ray::build:" in args]
        if on_worker:
            time.sleep(0.5)  # let it train a moment
            os.killpg(worker.pid, signal.SIGKILL)  # the whole worker node, mid-task
            killed = on_worker
        time.sleep(0.1)
    log, _ = build.communicate(timeout=900)
    assert killed, "no build task was ever scheduled on the worker node"
    assert build.returncode == 0, log[-3000:]
    retries = int(re.search(r"retries (\d+)", log).group(1))  # type: ignore[union-attr]
    assert retries >= 1, log[-3000:]
    loaded = bench.load(output)
    ids = loaded.ids()
    assert len(ids) == len(set(ids)) == 12, "every model once"
    store = BenchStore(output)
    for row in loaded.manifest.to_pylist():
        assert store.verified_row(row["id"], json.loads(row["row"])) is not None, row["id"]
