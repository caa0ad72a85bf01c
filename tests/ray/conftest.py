"""A real local Ray instance on 127.0.0.1 and a real S3 API server (moto) on 127.0.0.1.

The S3 server starts first and its endpoint and dummy credentials go into the environment, so the
Ray workers started afterwards inherit them (as they would inherit a real AWS chain).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

RAY = str(Path(sys.executable).with_name("ray"))


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free ports: every socket stays bound until all are chosen."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


# Every listener a node opens, chosen free: Ray's defaults (6379, 8265, 10001, 52365, ...) may be
# held by another Ray on this machine, or by a head of this suite still shutting down.
_NODE_PORTS = (
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "metrics-export-port",
    "runtime-env-agent-port",
    "node-manager-port",
    "object-manager-port",
    "ray-client-server-port",
)


@dataclass
class RayNode:
    """One ``ray start --block`` in its own process group and temp dir, its output in ``log``."""

    process: subprocess.Popen
    ports: dict[str, int]
    ip: str
    log: Path

    @property
    def address(self) -> str:
        """The GCS address of a head."""
        return f"{self.ip}:{self.ports['port']}"

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):  # the group may end by itself meanwhile
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


def start_ray_node(
    temp_dir: Path,
    env: dict[str, str],
    ready: Callable[[RayNode], bool],
    *,
    num_cpus: int,
    ip: str = "127.0.0.1",
    join: str | None = None,
    options: tuple[str, ...] = (),
    attempts: int = 3,
) -> RayNode:
    """Start a Ray head (with a GCS port and a dashboard port of its own) or, given ``join``, a
    node joining that head; wait until ``ready``.

    A ``ray start`` that exits before its node is ready is run again on fresh ports, at most
    ``attempts`` times: a port chosen free can be taken before Ray binds it. Every failed start's
    output goes into the failure message.
    """
    failures: list[str] = []
    for attempt in range(attempts):
        names = [*_NODE_PORTS, *(() if join else ("port", "dashboard-port"))]
        ports = dict(zip(names, _free_ports(len(names)), strict=True))
        node_dir = temp_dir / f"n{attempt}"  # short: Ray's socket paths are limited
        node_dir.mkdir(parents=True)
        command = [
            RAY,
            "start",
            "--block",
            f"--address={join}" if join else "--head",
            f"--node-ip-address={ip}",
            f"--num-cpus={num_cpus}",
            f"--temp-dir={node_dir}",
            "--disable-usage-stats",
            *(f"--{name}={port}" for name, port in ports.items()),
            *options,
        ]
        log = node_dir / "ray-start.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                command, env=env, start_new_session=True, stdout=sink, stderr=subprocess.STDOUT
            )
        node = RayNode(process, ports, ip, log)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and process.poll() is None:
            if ready(node):
                return node
            time.sleep(2)
        exited = process.poll() is not None
        node.stop()
        failures.append(f"attempt {attempt + 1}: exit {process.returncode}\n{node.log_tail()}")
        if not exited:  # up but never ready: starting again would not help
            break
    pytest.fail("ray start did not bring the node up:\n" + "\n".join(failures))


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1; sets AWS_ENDPOINT_URL and test credentials."""
    (port,) = _free_ports(1)
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


@pytest.fixture(scope="session")
def ray_node_starter() -> Callable[..., RayNode]:
    """:func:`start_ray_node`: a head or a joining node of a cluster the test owns."""
    return start_ray_node


@pytest.fixture
def own_processes() -> Callable[[str], list[int]]:
    """:func:`_own_processes`: find processes to kill in this session's own tree only."""
    return _own_processes
