"""A real local Ray instance on 127.0.0.1 and a real S3 API server (moto) on 127.0.0.1.

The S3 server starts first and its endpoint and dummy credentials go into the environment, so the
Ray workers started afterwards inherit them (as they would inherit a real AWS chain).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1; sets AWS_ENDPOINT_URL and test credentials."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        server.kill()
        pytest.fail("moto S3 server did not start")
    saved = {k: os.environ.get(k) for k in _S3_ENV}
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    yield endpoint
    server.terminate()
    server.wait(timeout=10)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


_S3_ENV = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


@pytest.fixture(scope="session")
def ray_cluster(s3_endpoint: str) -> Iterator[None]:
    """One embedded Ray for the session: 2 CPUs, every listener on 127.0.0.1."""
    import ray

    from nf_dist.distributed.cluster import init_ray

    init_ray(num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture
def bucket(s3_endpoint: str, request: pytest.FixtureRequest) -> str:
    """A fresh bucket on the loopback S3 server (created with boto3)."""
    import boto3

    name = "nf-" + request.node.name.lower().replace("_", "-")[:40]
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def smoke_bench(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, object]:
    """The smoke FingerBench, built once per session on the embedded Ray (metrics on a free
    port): its URI and the build report."""
    from nf_dist.bench.build import BuildConfig, build_bench

    uri = str(tmp_path_factory.mktemp("bench") / "smoke")
    config = BuildConfig(profile="smoke", output_uri=uri, progress=False, metrics_port=0)
    return uri, build_bench(config)


@pytest.fixture(scope="session")
def tiny_gan_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An untrained 8-channel GAN checkpoint (z_dim 16)."""
    from nf_dist.models.gan import GanSpec, build_gan
    from nf_dist.storage.checkpoints import save_checkpoint

    generator, discriminator = build_gan(GanSpec(16, 10, 8, 8, False))
    tensors = {f"generator.{k}": v for k, v in generator.state_dict().items()}
    tensors |= {f"discriminator.{k}": v for k, v in discriminator.state_dict().items()}
    spec = {"z_dim": 16, "num_classes": 10, "g_channels": 8, "d_channels": 8, "attention": False}
    folder = tmp_path_factory.mktemp("gan")
    return save_checkpoint(str(folder / "gan"), tensors, {"kind": "gan", "spec": spec})


def _own_processes(marker: str) -> list[int]:
    """PIDs of this test process's descendants whose command line contains ``marker``.

    Tests find processes to kill only in their own tree (the embedded Ray this session started,
    its raylet and workers), through ``ps --ppid``: another Ray cluster or build on the machine
    is never seen, let alone touched.
    """
    found: list[int] = []
    seen, frontier = {os.getpid()}, [os.getpid()]
    while frontier:
        listing = subprocess.run(
            ["ps", "-o", "pid=,args=", "--ppid", ",".join(map(str, frontier))],
            capture_output=True,
            text=True,
        ).stdout
        frontier = []
        for line in listing.splitlines():
            pid_text, _, args = line.strip().partition(" ")
            pid = int(pid_text)
            if pid not in seen:
                seen.add(pid)
                frontier.append(pid)
                if marker in args:
                    found.append(pid)
    return found


@pytest.fixture
def own_processes() -> Callable[[str], list[int]]:
    """:func:`_own_processes`: find processes to kill in this session's own tree only."""
    return _own_processes
