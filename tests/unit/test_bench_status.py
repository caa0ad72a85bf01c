"""`nf-dist bench status` on a build that has begun: the source in training, the rest waiting."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nf_dist.bench.catalog import load_profile
from nf_dist.bench.partial import EpochCheckpoints
from nf_dist.bench.status import bench_status, status_lines
from nf_dist.bench.store import BenchStore
from nf_dist.bench.task import row_key
from nf_dist.models import create_classifier
from nf_dist.models.training import TrainProgress


def test_a_model_in_training_shows_its_epochs_and_the_time_it_has_left(tmp_path: Path) -> None:
    profile = load_profile("smoke", {"recipes": {"source": {"train": {"epochs": 10}}}})
    source = profile.by_id()["source"]
    store = BenchStore(str(tmp_path))
    model = create_classifier(source.arch, width=source.width, stem_stride=source.stem_stride)
    checkpoints = EpochCheckpoints(
        store.partial_uri("source"), {"row": row_key(source), "parent_sha256": None}
    )
    # Made before the clock starts: the first optimizer imports for about 2 s on this machine.
    progress = TrainProgress(
        30, {}, torch.optim.SGD(model.parameters(), lr=0.1).state_dict(), [2.3, 2.1, 1.9]
    )
    save = checkpoints.attach(model).on_epoch_end
    assert save is not None
    checkpoints.earlier_seconds = 300.0  # the source trained 300 s before the last resume
    save(progress)

    status = {m.id: m for m in bench_status(profile, str(tmp_path))}
    source_status = status.pop("source")
    assert (source_status.state, source_status.epochs_done) == ("training", 3)
    # 3 of 10 epochs in about 300 s: 7 left at about 100 s each
    assert source_status.seconds_left == pytest.approx(700.0, rel=0.01)
    assert {m.state for m in status.values()} == {"waiting"}
    assert all(m.seconds_left is None for m in status.values())
    lines = status_lines(profile, str(tmp_path), list(bench_status(profile, str(tmp_path))))
    assert lines[0].endswith(
        f"0 of {len(profile.all_models)} built (0s of recorded training), "
        f"1 in training, 0 to rebuild, {len(status)} waiting"
    )
    assert lines[1].split() == [
        "source",
        "bench",
        "training",
        *f"epoch 3 of 10 done, {source_status.seconds:,.0f}s so far,".split(),
        *f"about {source_status.seconds_left:,.0f}s to go".split(),
    ]
