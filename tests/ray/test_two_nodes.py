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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.submit, pytest.mark.s3]

RAY = str(Path(sys.executable).with_name("ray"))
NF_DIST = [sys.executable, "-m", "nf_dist.cli"]


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
def cluster(
    s3_endpoint: str, ray_node_starter: Callable[..., Any]
) -> Iterator[tuple[str, dict[str, str], subprocess.Popen]]:
    """A head (127.0.0.2) and a worker node (127.0.0.3) with token auth; yields the GCS address,
    the client environment and the worker node's ``ray start`` process."""
    temp_dir = Path(tempfile.mkdtemp(prefix="r2", dir="/tmp"))  # short: Ray's socket paths
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1",  # a multi-node cluster (see the docstring)
        "NF_DIST_CACHE": str(temp_dir / "cache"),
    }
    env.pop("RAY_ADDRESS", None)

    def nodes_up(count: int, head_address: str | None = None) -> Callable[[Any], bool]:
        def ready(node: Any) -> bool:
            address = head_address or node.address
            status = subprocess.run(
                [RAY, "status", f"--address={address}"], env=env, capture_output=True, text=True
            )
            return status.returncode == 0 and len(re.findall(r"node_", status.stdout)) >= count

        return ready

    head = ray_node_starter(
        temp_dir / "head",
        env,
        nodes_up(1),
        ip="127.0.0.2",
        num_cpus=1,
        options=("--include-dashboard=false",),
    )
    worker = None
    try:
        worker = ray_node_starter(
            temp_dir / "worker",
            env,
            nodes_up(2, head.address),
            ip="127.0.0.3",
            num_cpus=1,
            join=head.address,
        )
        yield head.address, env, worker.process
    finally:
        if worker is not None:
            worker.stop()
        head.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)


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
