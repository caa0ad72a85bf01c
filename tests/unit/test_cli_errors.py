"""User errors end as one ``nf-dist: error:`` line and exit status 2, every time (no traceback,
no abort while torch and pyarrow tear down)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def _free_port() -> int:
    """A loopback port nothing listens on (bound then released by this test)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nf_dist.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("verify", "{tmp}/missing.parquet", "m", "--null", "n.json"), "no such fingerprint set"),
        (("verify", "{tmp}", "m", "--null", "n.json"), "is a directory"),
        (("report", "{tmp}/no-evaluation"), "no such file"),
        (("verify", "{tmp}/x.parquet", "m", "--null", "n.json", "--alpha", "1.5"), "alpha"),
        (("verify", "{tmp}/x.parquet", "m"), "verify needs a null"),
        (("bench", "plan", "--profile", "{tmp}/missing.yaml"), "does not exist"),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path: Path, args: tuple, message: str) -> None:
    result = _run(*(a.format(tmp=tmp_path) for a in args))
    assert result.returncode == 2, result.stderr[-2000:]
    assert "nf-dist: error: " in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_s3_endpoint_is_a_clear_error(tmp_path: Path) -> None:
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{_free_port()}",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
    }
    result = _run("verify", "s3://nowhere/set.parquet", "m", "--null", "n.json", env=env)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "nf-dist: error: " in result.stderr and "Traceback" not in result.stderr


def test_quick_error_exits_are_stable(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.parquet")
    codes = {_run("verify", missing, "m", "--null", "n.json").returncode for _ in range(6)}
    assert codes == {2}
