"""The nf-dist command: help, config errors, fingerprint and verify on tiny checkpoints."""

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nf_dist.cli import main
from nf_dist.fingerprint.fingerprint_set import FingerprintSet, save_fingerprint_set


@pytest.mark.parametrize(
    "command", [[], ["quickstart"], ["train"], ["gan", "train"], ["fingerprint"], ["verify"]]
)
def test_help(command: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "nf_dist.cli", *command, "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "usage: nf-dist" in out.stdout


def test_a_reader_that_leaves_early_is_not_an_error() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "nf_dist.cli", "bench", "plan", "--profile", "paper"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # gone before the command prints: as `nf-dist ... | head -0`
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141
    assert "error" not in stderr and "Traceback" not in stderr


def test_config_typo_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "train.yaml"
    config.write_text("trian: {epochs: 1}\n")
    assert main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'trian'" in err and "'train'" in err


def test_fingerprint_then_verify(
    tiny_zoo: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    gan, positives, negatives = (
        tiny_zoo["gan"],
        tiny_zoo["positive_uris"],
        tiny_zoo["negative_uris"],
    )
    output = str(tmp_path / "fp.parquet")
    args = [
        "fingerprint",
        "--no-progress",
        "--set",
        f"gan_uri={gan}",
        "--set",
        f"positives={json.dumps(positives)}",
        "--set",
        f"negatives={json.dumps(negatives)}",
        "--set",
        f"output_uri={output}",
        "--set",
        "fingerprint={num_fingerprints: 5, num_candidates: 128, num_optimised: 64, "
        "steps: 80, batch_size: 64, screen_transforms: [identity]}",  # a margin on any CPU
    ]
    assert main(args) == 0
    assert Path(output).exists() and Path(output.replace(".parquet", ".png")).exists()
    capsys.readouterr()
    known = ["--positive", *positives, "--negative", *negatives, "--calibrate", *negatives]
    assert main(["verify", output, *known, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rates = {row["suspect"]: row["matching_rate"] for row in report["suspects"]}
    assert rates[positives[0]] == 1.0, "the source must match its own fingerprint"
    assert rates[positives[1]] == 1.0
    assert report["metrics"]["aruc"] == pytest.approx(1.0 - max(rates[n] for n in negatives))
    p_values = {row["suspect"]: row["p_value"] for row in report["suspects"]}
    assert max(p_values[p] for p in positives) < min(p_values[n] for n in negatives)
    # A handful of fingerprints cannot reach 1e-3; at a lax rate the source is called stolen.
    lax = ["verify", output, positives[0], "--calibrate", *negatives, "--alpha", "0.5"]
    assert main(lax) == 0
    assert "STOLEN" in capsys.readouterr().out


def test_verify_refuses_pickled_suspect(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    fingerprints = FingerprintSet(
        np.zeros((2, 32, 32, 3), np.uint8), np.array([0, 1]), np.array([1, 0])
    )
    save_fingerprint_set(fingerprints, str(tmp_path / "fp.parquet"))
    marker = tmp_path / "ran"
    (tmp_path / "suspect.pt").write_bytes(pickle.dumps(_Touch(marker)))
    null = tmp_path / "null.json"
    null.write_text(json.dumps({"a": 1, "b": 9, "calibration_mean": 0.1, "calibration_models": 3}))
    args = [
        "verify",
        str(tmp_path / "fp.parquet"),
        str(tmp_path / "suspect.pt"),
        "--null",
        str(null),
    ]
    assert main(args) == 2
    assert "could execute" in capsys.readouterr().err
    assert not marker.exists()


class _Touch:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.path,))


def test_a_failing_command_leaves_the_previous_run_record_alone(tmp_path: Path) -> None:
    record = tmp_path / "evaluation" / "config.yaml"
    record.parent.mkdir()
    record.write_text("the previous run's record\n")
    code = main(
        [
            "evaluate",
            "--set",
            f"output_uri={record.parent}",
            "--set",
            f"bench_uri={tmp_path / 'no-bench'}",
            "--set",
            f"fingerprints.x={tmp_path / 'x.parquet'}",
        ]
    )
    assert code == 2
    assert record.read_text() == "the previous run's record\n"
