"""Fingerprinting methods behind one interface: registry, IPGuard's loss, baseline properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nf_dist.data import load_dataset
from nf_dist.fingerprint.methods import METHODS, FingerprintContext
from nf_dist.fingerprint.methods.akh import AkhConfig
from nf_dist.fingerprint.methods.ipguard import ipguard_loss


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
