"""Unit tests for the conditional GAN: contracts, checkpoints, resume, determinism, sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.nn.utils import parametrize

from nf_dist.errors import ConfigError, DataError
from nf_dist.models.gan import (
    GanSpec,
    GanTrainConfig,
    build_gan,
    gan_test_accuracy,
    load_gan,
    save_sample_grid,
    train_gan,
)

SPEC = GanSpec(z_dim=16, num_classes=10, g_channels=8, d_channels=8, attention=False)
TINY = {"z_dim": 16, "g_channels": 8, "d_channels": 8, "batch_size": 8}


def tiny_config(**overrides: object) -> GanTrainConfig:
    return GanTrainConfig(**{**TINY, "steps": 2, **overrides})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(32, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=32)
    return images, labels


@pytest.mark.parametrize("attention", [False, True])
def test_shapes_and_range(attention: bool) -> None:
    torch.manual_seed(0)
    generator, discriminator = build_gan(
        GanSpec(z_dim=16, num_classes=10, g_channels=8, d_channels=8, attention=attention)
    )
    z, y = torch.randn(5, 16), torch.arange(5)
    images = generator(z, y)
    assert images.shape == (5, 3, 32, 32)
    assert images.min() >= 0 and images.max() <= 1
    assert discriminator(images, y).shape == (5,)


def test_gradient_reaches_z() -> None:
    generator, discriminator = build_gan(SPEC)
    z = torch.randn(4, 16, requires_grad=True)
    y = torch.arange(4)
    discriminator(generator(z, y), y).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_spectral_norm_on_every_discriminator_layer() -> None:
    _, discriminator = build_gan(GanSpec(g_channels=8, d_channels=8, attention=True))
    layers = [m for m in discriminator.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert layers and all(parametrize.is_parametrized(m, "weight") for m in layers)
    assert parametrize.is_parametrized(discriminator.embed, "weight")


def test_train_checkpoint_and_load_round_trip(data, tmp_path: Path) -> None:
    images, labels = data
    out = str(tmp_path / "gan")
    result = train_gan(images, labels, tiny_config(steps=3), out, progress=False)
    assert result.steps_done == 3 and len(result.history) == 3
    assert (tmp_path / "gan.safetensors").exists() and (tmp_path / "gan.json").exists()
    generator, discriminator, meta = load_gan(out)
    assert meta["kind"] == "gan" and meta["steps_done"] == 3 and meta["spec"] == vars(SPEC)
    assert not generator.training and not discriminator.training
    z, y = torch.randn(6, 16), torch.arange(6)
    with torch.no_grad():
        assert torch.equal(generator(z, y), result.generator(z, y))
        x = generator(z, y)
        assert torch.equal(discriminator(x, y), result.discriminator(x, y))


def test_auxiliary_classifier_learns_the_real_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    labels = np.arange(32) % 2
    # Class 0 is dark, class 1 bright: learnable in a few steps.
    images = rng.integers(0, 60, (32, 32, 32, 3)) + 180 * labels[:, None, None, None]
    images = images.astype(np.uint8)
    out = str(tmp_path / "gan")
    config = tiny_config(steps=30, aux_weight=1.0, lr_d=2e-3)
    train_gan(images, labels, config, out, progress=False)
    _, discriminator, meta = load_gan(out)
    assert meta["spec"]["aux_classifier"] is True
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        scores, logits = discriminator.scores_and_logits(x, torch.from_numpy(labels))
    assert logits is not None and logits.shape == (32, 10) and scores.shape == (32,)
    assert (logits.argmax(1).numpy() == labels).mean() > 0.9
    assert torch.equal(discriminator(x, torch.from_numpy(labels)), scores)
    _, plain = build_gan(SPEC)
    assert plain.scores_and_logits(x, torch.from_numpy(labels))[1] is None


def test_resume_continues_and_matches_uninterrupted_run(data, tmp_path: Path) -> None:
    images, labels = data
    resumed_uri, straight_uri = str(tmp_path / "resumed"), str(tmp_path / "straight")
    train_gan(images, labels, tiny_config(steps=2), resumed_uri, progress=False)
    resumed = train_gan(images, labels, tiny_config(steps=4), resumed_uri, progress=False)
    assert resumed.steps_done == 4
    assert [h["step"] for h in resumed.history] == [3.0, 4.0]  # did not restart from 0
    straight = train_gan(images, labels, tiny_config(steps=4), straight_uri, progress=False)
    for a, b in zip(
        resumed.generator.state_dict().values(), straight.generator.state_dict().values()
    ):
        assert torch.equal(a, b)
    again = train_gan(images, labels, tiny_config(steps=4), resumed_uri, progress=False)
    assert again.steps_done == 4 and again.history == []


def test_resume_refuses_another_architecture(data, tmp_path: Path) -> None:
    images, labels = data
    out = str(tmp_path / "gan")
    train_gan(images, labels, tiny_config(steps=1), out, progress=False)
    with pytest.raises(ConfigError, match="another out_uri"):
        train_gan(images, labels, tiny_config(steps=2, g_channels=16), out, progress=False)


def test_same_seed_same_weights_golden(data, tmp_path: Path) -> None:
    images, labels = data
    runs = [
        train_gan(images, labels, tiny_config(seed=seed), str(tmp_path / f"g{i}"), progress=False)
        for i, seed in enumerate([0, 0, 1])
    ]
    weights = [torch.cat([p.flatten() for p in r.generator.parameters()]) for r in runs]
    assert torch.equal(weights[0], weights[1])
    assert not torch.equal(weights[0], weights[2])


def test_ema_generator_is_saved_and_loaded(data, tmp_path: Path) -> None:
    images, labels = data
    out = str(tmp_path / "gan")
    result = train_gan(images, labels, tiny_config(ema_decay=0.5), out, progress=False)
    assert result.ema_generator is not None and result.sampler is result.ema_generator
    ema, _, _ = load_gan(out)
    raw, _, _ = load_gan(out, ema=False)
    z, y = torch.randn(3, 16), torch.arange(3)
    with torch.no_grad():
        assert torch.equal(ema(z, y), result.ema_generator(z, y))
        assert not torch.equal(ema(z, y), raw(z, y))


@pytest.mark.parametrize(
    "overrides",
    [{"batch_size": 0}, {"steps": 0}, {"lr_g": -1.0}, {"beta2": 1.0}, {"g_channels": 2}],
)
def test_invalid_config_raises(overrides: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match=next(iter(overrides))):
        GanTrainConfig(**overrides)  # type: ignore[arg-type]


def test_bad_data_raises(data, tmp_path: Path) -> None:
    images, labels = data
    with pytest.raises(DataError, match="labels must lie"):
        train_gan(images, labels + 10, tiny_config(), str(tmp_path / "g"), progress=False)
    with pytest.raises(DataError, match="uint8"):
        train_gan(images.astype(np.float32), labels, tiny_config(), str(tmp_path / "g"))


def test_sample_grid_png(tmp_path: Path) -> None:
    generator, _ = build_gan(SPEC)
    path = save_sample_grid(generator, str(tmp_path / "grid.png"), per_class=3)
    with Image.open(path) as image:
        assert image.size == (3 * 34 + 2, 10 * 34 + 2)


class _AlwaysZero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(x.shape[0], 10)
        logits[:, 0] = 1
        return logits


def test_gan_test_accuracy_of_constant_classifier() -> None:
    generator, _ = build_gan(SPEC)
    accuracy = gan_test_accuracy(generator, _AlwaysZero(), num_samples=100, batch_size=40)
    assert accuracy == pytest.approx(0.1)


def test_frechet_distance_of_identical_and_shifted_gaussians() -> None:
    from nf_dist.models.gan.quality import frechet_distance

    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    # Same covariance, means 2 apart on one axis: FD = 4 (up to sampling noise).
    assert frechet_distance(a, a + np.array([2.0, 0, 0])) == pytest.approx(4.0, abs=1e-6)
    # N(0, I) vs N(0, 4I) in 3-D: tr(I + 4I - 2 * 2I) = 3.
    assert frechet_distance(a, 2 * rng.normal(size=(4000, 3))) == pytest.approx(3.0, abs=0.3)
