"""Attack invariants: pruning sparsity, noise scale, PGD's budget, parents left untouched."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from nf_dist.bench.attacks import ATTACKS, AttackData, ModelRecipe
from nf_dist.bench.attacks.adversarial import pgd
from nf_dist.bench.attacks.base import prunable_weights
from nf_dist.bench.attacks.noise import add_weight_noise
from nf_dist.data import ImageDataset
from nf_dist.errors import ConfigError
from nf_dist.models import create_classifier
from nf_dist.models.training import TrainConfig


@pytest.fixture
def data() -> AttackData:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (96, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 96)
    dataset = ImageDataset(images, labels, tuple(str(i) for i in range(10)), "random")
    return AttackData(train=dataset, finetune=dataset, query=dataset)


@pytest.fixture
def parent() -> torch.nn.Module:
    return create_classifier("resnet18", width=0.125, stem_stride=2).eval()


def recipe(**params: object) -> ModelRecipe:
    return ModelRecipe(
        width=0.125, train=TrainConfig(epochs=1, batch_size=32, lr=0.01), params=dict(params)
    )


def test_prune_keeps_the_rate_of_weights_at_zero(parent, data) -> None:
    model = ATTACKS.get("prune")()(parent, data, recipe(rate=0.6))
    weights = torch.cat([w.detach().flatten() for w in prunable_weights(model)])
    assert (weights == 0).float().mean().item() == pytest.approx(0.6, abs=0.01)


def test_attacks_leave_the_parent_untouched(parent, data) -> None:
    before = copy.deepcopy(parent.state_dict())
    for name, params in [("finetune", {"mode": "rtal"}), ("noise", {"level": 2}), ("prune", {})]:
        ATTACKS.get(name)()(parent, data, recipe(**params))
    for key, value in parent.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_weight_noise_has_the_documented_scale(parent) -> None:
    noisy = copy.deepcopy(parent)
    add_weight_noise(noisy, level=4.0, seed=0)
    for clean, changed in zip(prunable_weights(parent), prunable_weights(noisy)):
        if clean.numel() < 2000:
            continue
        ratio = (changed - clean).std() / clean.std()
        assert ratio.item() == pytest.approx(0.25, rel=0.1)


def test_pgd_stays_in_the_epsilon_ball_and_the_image_range(parent) -> None:
    images = torch.rand(8, 3, 32, 32)
    labels = torch.randint(0, 10, (8,))
    adversarial = pgd(parent, images, labels, epsilon=8 / 255, step_size=2 / 255, steps=3)
    assert (adversarial - images).abs().max().item() <= 8 / 255 + 1e-6
    assert adversarial.min() >= 0 and adversarial.max() <= 1


def test_adversarial_finetune_and_knockoff_run(parent, data) -> None:
    adv = ATTACKS.get("adversarial")()(parent, data, recipe(ratio=0.5, steps=1))
    knock = ATTACKS.get("knockoff")()(parent, data, recipe())
    assert adv(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert knock(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_knockoff_without_query_data_says_how_to_fix(parent, data) -> None:
    no_query = AttackData(train=data.train, finetune=data.finetune)
    with pytest.raises(ConfigError, match="query_uri"):
        ATTACKS.get("knockoff")()(parent, no_query, recipe())


@pytest.mark.parametrize(
    ("name", "params"),
    [("prune", {"rate": 1.5}), ("noise", {"level": 0}), ("finetune", {"mode": "ftxx"})],
)
def test_bad_attack_parameters_are_config_errors(parent, data, name, params) -> None:
    with pytest.raises(ConfigError):
        ATTACKS.get(name)()(parent, data, recipe(**params))
