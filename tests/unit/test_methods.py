"""Fingerprinting methods behind one interface: registry, IPGuard's loss, baseline properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nf_dist.data import load_dataset
from nf_dist.fingerprint.methods import METHODS, FingerprintContext
from nf_dist.fingerprint.methods.akh import AkhConfig
from nf_dist.fingerprint.methods.clean import CleanConfig
from nf_dist.fingerprint.methods.ipguard import IPGuardConfig, ipguard_loss
from nf_dist.fingerprint.methods.metafinger import MetaFingerConfig
from nf_dist.fingerprint.methods.metav import MetaVConfig
from nf_dist.verify import model_oracle, verify


def test_every_method_is_registered() -> None:
    expected = {"naturalfinger", "akh", "clean", "ipguard", "metafinger", "metav"}
    assert expected <= set(METHODS.names())


def test_ipguard_loss_on_a_hand_computed_case() -> None:
    logits = torch.tensor([[5.0, 1.0, 2.0], [0.0, 9.0, 3.0]])
    original = torch.tensor([0, 1])
    target = torch.tensor([1, 2])
    # image 0: relu(5 - 1 + 10) + relu(2 - 5) = 14; image 1: relu(9 - 3 + 10) + relu(0 - 9) = 16
    assert ipguard_loss(logits, original, target, 10.0).tolist() == [14.0, 16.0]


@pytest.fixture(scope="module")
def context(tiny_zoo: dict, cifar_test_uri: str, tmp_path_factory) -> FingerprintContext:
    data = load_dataset(cifar_test_uri, cache_dir=tmp_path_factory.mktemp("cache"))
    clean = data.subset(np.arange(200))
    return FingerprintContext(tiny_zoo["positives"], tiny_zoo["negatives"], clean=clean)


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("akh", AkhConfig(num_fingerprints=20)),
        ("clean", CleanConfig(num_fingerprints=20)),
        ("ipguard", IPGuardConfig(20, steps=20, lr=0.01)),
        ("metafinger", MetaFingerConfig(20, num_seeds=20, epochs=2, steps_per_epoch=3)),
        ("metav", MetaVConfig(20, steps=10)),
    ],
)
def test_baselines_match_their_source_and_give_valid_rates(
    context: FingerprintContext, name: str, config: object
) -> None:
    fingerprints = METHODS.get(name)().generate(context, config)
    assert 0 < len(fingerprints) <= 20 and fingerprints.method == name
    assert fingerprints.images.dtype == np.uint8 and fingerprints.images.shape[1:] == (32, 32, 3)
    source = context.positives[0]
    assert verify(fingerprints, "source", model_oracle(source), 0.5).matching_rate == 1.0
    for model in [*context.positives, *context.negatives]:
        rate = verify(fingerprints, "m", model_oracle(model), 0.5).matching_rate
        assert 0.0 <= rate <= 1.0


def test_akh_keeps_only_images_the_source_gets_wrong_in_a_seeded_order(
    context: FingerprintContext,
) -> None:
    akh = METHODS.get("akh")()
    first = akh.generate(context, AkhConfig(num_fingerprints=15, seed=0))
    again = akh.generate(context, AkhConfig(num_fingerprints=15, seed=0))
    other = akh.generate(context, AkhConfig(num_fingerprints=15, seed=1))
    assert context.clean is not None
    truth = {
        image.tobytes(): label for image, label in zip(context.clean.images, context.clean.labels)
    }
    for image, label in zip(first.images, first.y_orig):
        assert truth[image.tobytes()] != label, "AKH's expected label is the source's mistake"
    assert np.array_equal(first.images, again.images), "the order is a function of the seed"
    assert not np.array_equal(first.images, other.images)
    assert first.info["num_misclassified"] >= len(first)
