"""One suspect deployed the ways people deploy classifiers, on loopback, for the protocol
benchmark (``benchmarks/verify_protocols/run.py``) and its tests:

- ``nf-dist serve`` (protocol ``nfdist``),
- KServe's Python model server, V1 and Open Inference Protocol V2 REST (:mod:`.kserve_suspect`),
- TorchServe's native answer shape on raw image bytes (:mod:`.torchserve_like`),
- a Ray Serve deployment with a FastAPI ingress taking a multipart upload and answering
  Hugging Face-style ``[{"label", "score"}]`` (:mod:`.ray_serve_suspect`).

:func:`launched` starts a server process on a free port and stops it, by its own PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def launched(
    argv: list[str], health_url: str, *, env: dict[str, str] | None = None, start_s: float = 120
) -> Iterator[subprocess.Popen]:
    """Run ``python argv...`` until ``health_url`` answers 200; stop it on exit (SIGTERM, then
    SIGKILL), by the PID this call started."""
    process = subprocess.Popen(
        [sys.executable, *argv],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + start_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{argv[:3]} exited with {process.returncode}")
            try:
                if httpx.get(health_url, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{argv[:3]} did not answer {health_url} in {start_s:g} s")
            time.sleep(0.3)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def five_ways(checkpoint: str) -> Iterator[dict[str, dict]]:
    """The suspect served five ways; yields ``{way: endpoint config}``. Ray must be connected
    (Ray Serve runs on it)."""
    from benchmarks.deployments import ray_serve_suspect
    from nf_dist.data.readers import CIFAR10_CLASSES

    ports = {name: free_port() for name in ("nfdist", "kserve", "torchserve", "ray")}
    nfdist = f"http://127.0.0.1:{ports['nfdist']}"
    kserve = f"http://127.0.0.1:{ports['kserve']}"
    torchserve = f"http://127.0.0.1:{ports['torchserve']}"
    serve_cli = ["-m", "nf_dist.cli", "serve", checkpoint, "--port", str(ports["nfdist"])]
    kserve_cli = ["-m", "benchmarks.deployments.kserve_suspect", checkpoint]
    kserve_cli += ["--http_port", str(ports["kserve"])]
    torchserve_cli = ["-m", "benchmarks.deployments.torchserve_like", checkpoint]
    torchserve_cli += ["--port", str(ports["torchserve"])]
    names = list(CIFAR10_CLASSES)
    with (
        launched(serve_cli, f"{nfdist}/health"),
        launched(kserve_cli, f"{kserve}/v2/models/suspect/ready"),
        launched(torchserve_cli, f"{torchserve}/ping"),
    ):
        ray_url = ray_serve_suspect.deploy(checkpoint, ports["ray"])
        try:
            yield {
                "nfdist": {"url": f"{nfdist}/predict"},
                "oip-v2": {"url": f"{kserve}/v2/models/suspect/infer", "protocol": "oip-v2"},
                "kserve-v1": {
                    "url": f"{kserve}/v1/models/suspect:predict",
                    "protocol": "kserve-v1",
                    "instance": "b64",
                },
                "raw-image": {
                    "url": f"{torchserve}/predictions/suspect",
                    "protocol": "raw-image",
                    "class_names": names,
                },
                "ray-serve": {
                    "url": ray_url,
                    "protocol": "raw-image",
                    "body": "multipart",
                    "class_names": names,
                },
            }
        finally:
            ray_serve_suspect.shutdown()
