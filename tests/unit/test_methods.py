"""Fingerprinting methods behind one interface: registry, IPGuard's loss, baseline properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nf_dist.data import load_dataset
from nf_dist.fingerprint.ensembles import conferrability
from nf_dist.fingerprint.methods import METHODS, FingerprintContext
from nf_dist.fingerprint.methods.akh import AkhConfig
from nf_dist.fingerprint.methods.cae import CaeConfig, ensemble_scores
from nf_dist.fingerprint.methods.ipguard import ipguard_loss
from nf_dist.models.inference import predict


def test_every_method_is_registered() -> None:
    expected = {"naturalfinger", "akh", "cae", "clean", "ipguard", "metafinger", "metav"}
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


def test_cae_scores_on_hand_computed_cases() -> None:
    # two surrogates, one reference, two classes: E_c = mean_s p_s,c * (1 - p_r,c)
    surrogates = torch.tensor([[[0.8, 0.2]], [[0.6, 0.4]]])  # (S=2, N=1, C=2)
    references = torch.tensor([[[0.5, 0.5]]])
    assert torch.allclose(ensemble_scores(surrogates, references), torch.tensor([[0.35, 0.15]]))
    source = np.array([3, 3, 1])
    surrogate_labels = np.array([[3, 3, 1], [3, 0, 1]])  # (S=2, N=3)
    reference_labels = np.array([[3, 0, 0], [0, 0, 1], [0, 0, 0], [0, 0, 0]])  # (R=4, N=3)
    # transfer 1, 0.5, 1; references agreeing 0.25, 0, 0.25
    assert conferrability(source, surrogate_labels, reference_labels).tolist() == [0.75, 0.5, 0.75]


def test_cae_examples_follow_the_surrogate_and_leave_the_references(
    context: FingerprintContext,
) -> None:
    settings = CaeConfig(num_fingerprints=40, num_seeds=96, steps=40, lr=0.01, threshold=0.5)
    made = METHODS.get("cae")().generate(context, settings)
    assert context.clean is not None
    source, surrogate = context.positives
    assert np.array_equal(predict(source, made.images), made.y_orig)
    assert len(made) >= 5 and min(made.info["conferrability"]) >= 0.5
    # every kept example transfers to the one surrogate and to at most half the references
    assert np.mean(predict(surrogate, made.images) == made.y_orig) == 1.0
    refs = np.mean([predict(m, made.images) == made.y_orig for m in context.negatives], axis=0)
    assert refs.max() <= 0.5
    original = {im.tobytes(): y for im, y in zip(context.clean.images, context.clean.labels)}
    assert made.info["num_candidates"] <= 96 and not set(original) & {
        im.tobytes() for im in made.images
    }
