"""Contract tests generated over every registered classifier (timm style).

Contract: ``(N, 3, 32, 32)`` in [0, 1] -> ``(N, num_classes)`` logits, last layer ``fc``.
Tiny widths and batch 2 keep the whole file to a few seconds on one CPU thread.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from nf_dist.errors import ConfigError
from nf_dist.models import create_classifier, list_classifiers

NAMES = list_classifiers()
WIDTH = 0.125
BATCH = 2

EXPECTED_NAMES = {
    "resnet18",
    "resnet34",
    "resnet50",
    "seresnet18",
    "vgg13_bn",
    "vgg16_bn",
    "vgg19_bn",
    "densenet_bc",
    "efficientnet_b0",
    "googlenet",
    "inception_v3",
    "mobilenet_v2",
    "shufflenet_v2",
    "squeezenet",
    "xception",
}


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    """One intra-op thread: the test machines are small and shared."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(previous)


def _num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_holds_the_fingerbench_architectures() -> None:
    assert len(NAMES) == 15
    assert set(NAMES) == EXPECTED_NAMES
    assert list_classifiers("vgg*") == ["vgg13_bn", "vgg16_bn", "vgg19_bn"]


def test_unknown_name_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="resnet18"):
        create_classifier("resnet181")


@pytest.mark.parametrize("stem_stride", [1, 2])
@pytest.mark.parametrize("name", NAMES)
def test_output_shape(name: str, stem_stride: int) -> None:
    model = create_classifier(name, width=WIDTH, stem_stride=stem_stride)
    logits = model(torch.rand(BATCH, 3, 32, 32))
    assert logits.shape == (BATCH, 10)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", NAMES)
def test_num_classes_and_fc(name: str) -> None:
    model = create_classifier(name, num_classes=7, width=WIDTH, stem_stride=2)
    assert isinstance(model.body.fc, nn.Linear)
    assert model.fc is model.body.fc
    assert model.fc.out_features == 7

    # fc must be the last layer: its output is the model's output.
    captured: list[torch.Tensor] = []
    model.fc.register_forward_hook(lambda _m, _i, out: captured.append(out))
    logits = model(torch.rand(BATCH, 3, 32, 32))
    assert logits.shape == (BATCH, 7)
    assert len(captured) == 1 and captured[0] is logits


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_the_input(name: str) -> None:
    model = create_classifier(name, width=WIDTH, stem_stride=2).train()
    x = torch.rand(BATCH, 3, 32, 32, requires_grad=True)
    loss = nn.functional.cross_entropy(model(x), torch.tensor([0, 1]))
    loss.backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_eval_is_deterministic_at_batch_one(name: str) -> None:
    model = create_classifier(name, width=WIDTH, stem_stride=2).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        first, second = model(x), model(x)
    assert first.shape == (1, 10)
    assert torch.equal(first, second)


@pytest.mark.parametrize("name", NAMES)
def test_width_scales_parameter_count(name: str) -> None:
    narrow = create_classifier(name, width=0.25, stem_stride=2)
    wide = create_classifier(name, width=0.5, stem_stride=2)
    assert _num_params(narrow) < _num_params(wide)
