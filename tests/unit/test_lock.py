"""The lock and pyproject.toml agree, and a disagreement is caught with the fix named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check_lock.py"


def _check(pyproject: Path, lock: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(pyproject), str(lock)], capture_output=True, text=True
    )


def test_the_shipped_lock_answers_pyproject() -> None:
    result = _check(ROOT / "pyproject.toml", ROOT / "requirements.lock")
    assert result.returncode == 0, result.stderr


def test_a_missing_pin_a_pin_out_of_range_and_a_loose_line_are_caught(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "demo"\ndependencies = ["numpy>=1.24", "pyyaml>=6", "tqdm"]\n'
        '[project.optional-dependencies]\ndev = ["pytest>=7"]\n'
    )
    lock = tmp_path / "requirements.lock"
    lock.write_text("# pins\nnumpy==1.20.0\npyyaml>=6\ntqdm==4.66.0\n")
    result = _check(pyproject, lock)
    assert result.returncode == 1
    assert "numpy: " in result.stderr and "outside" in result.stderr
    assert "'pyyaml>=6' is not a pin" in result.stderr
    assert "pytest is in pyproject.toml but not pinned" in result.stderr
    assert "make lock" in result.stderr
