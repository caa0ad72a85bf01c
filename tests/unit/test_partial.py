"""Epoch checkpoints of a model in training: a stopped build resumes to the same model."""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from nf_dist.bench.attacks import ATTACKS, AttackData, ModelRecipe
from nf_dist.bench.partial import EpochCheckpoints
from nf_dist.data import ImageDataset
from nf_dist.models import create_classifier
from nf_dist.models.training import TrainConfig, TrainProgress

IDENTITY = {"row": "adv-0.5 as in the catalog", "parent_sha256": "ab" * 32}


class StoppedError(Exception):
    """Stands for the process being killed right after an epoch checkpoint."""


class StopAfterEpochs(EpochCheckpoints):
    def __init__(self, uri: str, identity: dict, epochs: int) -> None:
        super().__init__(uri, identity)
        self.epochs = epochs

    def _save(self, model: torch.nn.Module, progress: TrainProgress, seconds: float) -> None:
        super()._save(model, progress, seconds)
        if len(progress.losses) == self.epochs:
            raise StoppedError


@pytest.fixture
def data() -> AttackData:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (96, 32, 32, 3), dtype=np.uint8)
    dataset = ImageDataset(images, rng.integers(0, 10, 96), tuple("0123456789"), "random")
    return AttackData(train=dataset, finetune=dataset, query=dataset)


@pytest.fixture
def parent() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_classifier("resnet18", width=0.125, stem_stride=2).eval()


TRAIN = TrainConfig(epochs=4, batch_size=32, lr=0.01, schedule="constant")
# Adversarial training draws PGD's random starts from the attack's own generator, and SqueezeNet's
# dropout from torch's global one: a resume restores both, with the data order and the optimiser.
RECIPES = {
    "adversarial": ModelRecipe(width=0.125, train=TRAIN, params={"ratio": 0.5, "steps": 1}),
    "distill": ModelRecipe("squeezenet", width=0.125, train=TRAIN),
}


def _build(parent, data, checkpoints, attack: str = "adversarial") -> torch.nn.Module:
    torch.manual_seed(7)  # as build_model seeds every row
    recipe = RECIPES[attack]
    return ATTACKS.get(attack)()(parent, data, recipe, seed=7, checkpoints=checkpoints)


def _assert_same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


@pytest.mark.parametrize("attack", sorted(RECIPES))
def test_a_build_stopped_after_an_epoch_resumes_to_the_uninterrupted_model(
    parent, data, tmp_path: Path, attack: str
) -> None:
    uri = str(tmp_path / "partial" / "model.pt")
    uninterrupted = _build(parent, data, None, attack)
    with pytest.raises(StoppedError):
        _build(parent, data, StopAfterEpochs(uri, IDENTITY, epochs=2), attack)
    resumed_checkpoints = EpochCheckpoints(uri, IDENTITY)
    resumed = _build(parent, data, resumed_checkpoints, attack)
    _assert_same(resumed, uninterrupted)
    assert resumed_checkpoints.earlier_seconds > 0  # the row's time counts both runs
    assert resumed_checkpoints.resumed_epochs == 2
    assert Path(uri).exists()  # until the model is committed
    resumed_checkpoints.clear()
    assert not Path(uri).exists()
    resumed_checkpoints.clear()  # a second clear (a retried commit) is harmless


def test_a_partial_of_another_row_or_parent_is_ignored(parent, data, tmp_path: Path) -> None:
    uri = str(tmp_path / "adv-0.5.pt")
    with pytest.raises(StoppedError):
        _build(parent, data, StopAfterEpochs(uri, IDENTITY, epochs=2))
    rebuilt_parent = {**IDENTITY, "parent_sha256": "cd" * 32}
    checkpoints = EpochCheckpoints(uri, rebuilt_parent)
    fresh = _build(parent, data, checkpoints)
    assert checkpoints.earlier_seconds == 0
    _assert_same(fresh, _build(parent, data, None))
    assert torch.load(uri, weights_only=True)["identity"] == rebuilt_parent  # replaced


class _RunsCode:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {_MARKER}",))


_MARKER = ""


def test_a_partial_that_would_run_code_is_refused_and_training_starts_over(
    parent, data, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    global _MARKER
    _MARKER = str(tmp_path / "ran")
    uri = tmp_path / "adv-0.5.pt"
    uri.write_bytes(pickle.dumps({"identity": IDENTITY, "model": _RunsCode()}, protocol=2))
    checkpoints = EpochCheckpoints(str(uri), IDENTITY)
    with caplog.at_level(logging.WARNING, logger="nf_dist.bench.partial"):
        fresh = _build(parent, data, checkpoints)
    assert not Path(_MARKER).exists()
    assert "unreadable partial" in caplog.text
    _assert_same(fresh, _build(parent, data, None))


def test_a_partial_that_does_not_fit_the_model_is_not_loaded_into_it(
    parent, data, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    uri = str(tmp_path / "adv-0.5.pt")
    wider = create_classifier("resnet18", width=0.25, stem_stride=2)
    optimizer = torch.optim.SGD(wider.parameters(), lr=0.1)
    save = EpochCheckpoints(uri, IDENTITY).attach(wider).on_epoch_end
    assert save is not None
    save(TrainProgress(3, {}, optimizer.state_dict(), [2.0]))  # same row, another model's shapes
    with caplog.at_level(logging.WARNING, logger="nf_dist.bench.partial"):
        fresh = _build(parent, data, EpochCheckpoints(uri, IDENTITY))
    assert "does not fit the model" in caplog.text
    _assert_same(fresh, _build(parent, data, None))


def test_checkpoints_cover_one_training_loop(parent, tmp_path: Path) -> None:
    checkpoints = EpochCheckpoints(str(tmp_path / "x.pt"), IDENTITY)
    checkpoints.attach(parent)
    with pytest.raises(RuntimeError, match="one training loop per model"):
        checkpoints.attach(parent)
