"""The embedded Ray of one machine listens on loopback only: every listening socket of this
test session's own Ray processes (found as descendants of this process, never by name) is bound
to 127.0.0.1."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import ray

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_cluster")]


def _descendants(root: int) -> set[int]:
    """This process and every process it started, through ``ps --ppid`` (its own tree only)."""
    found, frontier = {root}, [root]
    while frontier:
        children = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", ",".join(map(str, frontier))],
            capture_output=True,
            text=True,
        ).stdout.split()
        frontier = [int(pid) for pid in children if int(pid) not in found]
        found.update(frontier)
    return found


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) to list sockets")
def test_every_listener_of_the_embedded_ray_is_on_loopback() -> None:
    assert ray.util.get_node_ip_address() == "127.0.0.1"
    ray.get(ray.remote(lambda: os.getpid()).remote())  # at least one worker is up
    ours = _descendants(os.getpid())
    listeners = []
    for line in subprocess.run(
        ["ss", "-ltnpH"], capture_output=True, text=True
    ).stdout.splitlines():
        if {int(pid) for pid in re.findall(r"pid=(\d+)", line)} & ours:
            listeners.append(line.split()[3])
    assert len(listeners) >= 3, "GCS, raylet and a worker at least"
    exposed = [a for a in listeners if not a.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:"))]
    assert not exposed, f"listening beyond loopback: {exposed}"
