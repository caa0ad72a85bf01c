"""Ray Train data-parallel training (2 CPU workers, gloo): the single-process twin, a worker
killed mid-run, and the GAN."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from nf_dist.config import from_dict
from nf_dist.models.checkpoint import load_classifier
from nf_dist.models.gan.train import load_gan
from nf_dist.pipelines.train import GanJobConfig, TrainJobConfig, run_gan, run_train

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_cluster")]

DATA = {"half_size": 512, "finetune_size": 128, "test_size": 256}


def _train_config(tmp_path: Path, name: str, workers: int, epochs: float = 2) -> TrainJobConfig:
    return from_dict(
        TrainJobConfig,
        {
            "output_uri": str(tmp_path / name),
            "data": DATA,
            "arch": "resnet18",
            "width": 0.125,
            "train": {"epochs": epochs, "batch_size": 64, "lr": 0.05},
            "workers": {"num": workers},
        },
    )


def test_two_workers_train_like_the_single_process_twin(tmp_path: Path) -> None:
    single = run_train(_train_config(tmp_path, "single", 0), progress=False)
    ray_acc = run_train(_train_config(tmp_path, "ray", 2), progress=False)
    model, meta = load_classifier(str(tmp_path / "ray"))
    assert meta["workers"] == 2
    assert meta["test_accuracy"] == pytest.approx(ray_acc)
    # Same global batches, gradients averaged: the runs differ only in BatchNorm statistics.
    assert abs(single - ray_acc) < 0.08
    assert list((tmp_path / "ray.raytrain").glob("checkpoint_*"))


# 44-71 s on 2 AVX2 cores; the default suite's twins kill a worker of the other Ray paths
# (test_bench_build's test_a_worker_killed_mid_build_is_retried, test_sharded's killed actor)
@pytest.mark.slow
def test_a_killed_worker_restarts_from_the_last_checkpoint(tmp_path: Path, own_processes) -> None:
    config = _train_config(tmp_path, "killed", 2, epochs=5)
    run_dir = tmp_path / "killed.raytrain"
    killed: list[int] = []

    def kill_after_first_checkpoint() -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if list(run_dir.glob("checkpoint_*")):
                # This session's Ray Train workers (not the trainer's own driver task).
                driver = set(own_processes("train_fn"))
                pids = [p for p in own_processes("RayTrainWorker") if p not in driver]
                if pids:
                    os.kill(pids[-1], signal.SIGKILL)
                    killed.append(pids[-1])
                    return
            time.sleep(0.1)

    killer = threading.Thread(target=kill_after_first_checkpoint, daemon=True)
    killer.start()
    acc = run_train(config, progress=False)
    killer.join(timeout=5)
    assert killed, "no worker was running after the first checkpoint"
    assert 0 <= acc <= 1
    _, meta = load_classifier(str(tmp_path / "killed"))
    assert meta["workers"] == 2


def test_gan_trains_on_two_workers_and_resumes(tmp_path: Path) -> None:
    config = from_dict(
        GanJobConfig,
        {
            "output_uri": str(tmp_path / "gan"),
            "data": DATA,
            "gan": {
                "g_channels": 8,
                "d_channels": 8,
                "z_dim": 16,
                "steps": 4,
                "batch_size": 8,
                "checkpoint_every": 2,
            },
            "workers": {"num": 2},
        },
    )
    grid = run_gan(config, progress=False)
    assert Path(grid).exists()
    _, _, meta = load_gan(str(tmp_path / "gan"))
    assert meta["steps_done"] == 4
    run_gan(config, progress=False)  # already complete: returns at once, nothing retrained
    assert load_gan(str(tmp_path / "gan"))[2]["steps_done"] == 4
