"""Losses and metrics on hand-computed cases."""

import math

import numpy as np
import pytest
import torch

from nf_dist.fingerprint.losses import cw_away_loss, cw_loss, discriminator_loss
from nf_dist.scoring import aruc, aruc_bound, matching_rate, roc_auc, summarize, tpr_at_fpr


def test_cw_loss_hand_computed() -> None:
    logits = torch.tensor([[1.0, 3.0, 0.0], [5.0, 1.0, 2.0], [0.0, 100.0, 0.0]])
    target = torch.tensor([0, 0, 1])
    # row 0: max other 3 - 1 = 2; row 1: 2 - 5 = -3; row 2: 0 - 100 = -100, clamped at -50.
    assert cw_loss(logits, target, k=50.0).tolist() == [2.0, -3.0, -50.0]
    assert cw_loss(logits, target, k=2.0).tolist() == [2.0, -2.0, -2.0]


def test_cw_away_loss_hand_computed() -> None:
    logits = torch.tensor([[1.0, 3.0, 0.0], [5.0, 0.0, 2.0], [0.0, 100.0, 0.0]])
    source = torch.tensor([1, 2, 0])
    # source logit minus the best other: 3 - 1 = 2; 2 - 5 = -3; 0 - 100 = -100 -> clamped at -50
    assert cw_away_loss(logits, source, k=50.0).tolist() == [2.0, -3.0, -50.0]


def test_cw_loss_gradient_and_shape_errors() -> None:
    logits = torch.tensor([[1.0, 3.0, 0.0]], requires_grad=True)
    cw_loss(logits, torch.tensor([0]), k=50.0).sum().backward()
    assert logits.grad is not None
    assert logits.grad.tolist() == [[-1.0, 1.0, 0.0]]
    with pytest.raises(ValueError, match="expects"):
        cw_loss(torch.zeros(3), torch.tensor([0]), k=1.0)


def test_discriminator_loss_modes() -> None:
    scores = torch.tensor([-2.0, 0.0, 2.0])
    assert discriminator_loss(scores, "generator_hinge").tolist() == [3.0, 1.0, 0.0]
    assert discriminator_loss(scores, "generator_linear").tolist() == [2.0, 0.0, -2.0]
    assert discriminator_loss(scores, "paper").tolist() == [0.0, 1.0, 3.0]
    with pytest.raises(ValueError, match="unknown"):
        discriminator_loss(scores, "nope")


def test_matching_rate() -> None:
    assert matching_rate([1, 2, 3, 4], [1, 2, 0, 0]) == 0.5
    with pytest.raises(ValueError):
        matching_rate([1, 2], [1])


def test_aruc_perfect_and_useless() -> None:
    assert aruc([1.0, 1.0], [0.0, 0.0]) == 1.0
    assert aruc([0.5], [0.5]) == 0.0  # R(t)=1 only for t<=0.5, U(t)=1 only for t>0.5


def test_aruc_hand_computed_steps() -> None:
    # R = 1 on [0, .9], 0.5 on (.9, 1]; U = 0 on [0, .1], .5 on (.1, .2], 1 on (.2, 1].
    # min: .5 on (.1,.2] -> .05; 1 on (.2,.9] -> .7; .5 on (.9,1] -> .05.  Total .8.
    assert math.isclose(aruc([1.0, 0.9], [0.1, 0.2]), 0.8)
    # Overlap: positives [0.6, 0.3], negatives [0.4]: R=1 on [0,.3], .5 on (.3,.6]; U=1 on (.4,1].
    # min: 0 on [0,.4]; .5 on (.4,.6] -> .1; 0 after.  Total .1.
    assert math.isclose(aruc([0.6, 0.3], [0.4]), 0.1)


def test_aruc_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        aruc([1.2], [0.1])
    with pytest.raises(ValueError, match="non-empty"):
        aruc([], [0.1])


def test_aruc_never_exceeds_its_mean_rate_bound() -> None:
    assert aruc([0.9, 0.9], [0.2, 0.2]) == pytest.approx(0.7)
    assert aruc_bound([0.9, 0.9], [0.2, 0.2]) == pytest.approx(0.8)
    # tight when the positives all match every fingerprint
    assert aruc([1.0, 1.0], [0.2, 0.2]) == pytest.approx(aruc_bound([1.0, 1.0], [0.2, 0.2]))
    assert aruc_bound([1.0, 1.0], [0.0, 0.0]) == 1.0
    rng = np.random.default_rng(0)
    for _ in range(200):
        positives = rng.uniform(0, 1, rng.integers(1, 20))
        negatives = rng.uniform(0, 1, rng.integers(1, 20))
        assert aruc(positives, negatives) <= aruc_bound(positives, negatives) + 1e-12
    assert summarize([0.9, 0.5], [0.1])["aruc_bound"] == pytest.approx(0.7)


def test_roc_auc_and_tpr_at_fpr() -> None:
    assert roc_auc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert roc_auc([0.5], [0.5]) == 0.5
    assert roc_auc([0.1], [0.9]) == 0.0
    positives, negatives = [0.9, 0.8, 0.3], [0.1, 0.2, 0.85, 0.87] + [0.0] * 96
    # At most 1 of 100 negatives may reach the threshold, so t must exceed 0.85: only 0.9 passes.
    assert tpr_at_fpr(positives, negatives, 0.01) == pytest.approx(1 / 3)
    assert tpr_at_fpr(positives, negatives, 0.05) == pytest.approx(1.0)
    assert summarize(positives, negatives)["num_negative"] == 100
