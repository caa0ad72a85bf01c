"""Shared fixtures: tiny models, tiny GAN, real CIFAR-10 slices from ../shared/data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
CIFAR_TEST = SHARED_DATA / "cifar10" / "test.parquet"


@pytest.fixture(autouse=True)
def _single_thread_and_seed() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def cifar_test_uri() -> str:
    if not CIFAR_TEST.exists():
        pytest.skip(f"{CIFAR_TEST} is missing: put the shared data beside the project")
    return str(CIFAR_TEST)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def tiny_zoo(cifar_test_uri: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Tiny models trained for a moment on real CIFAR-10, plus a tiny untrained GAN.

    Positives: a VGG13 source and a fine-tuned copy; negatives: two independently trained models.
    Returns checkpoint stems and the loaded models.
    """
    import copy

    from nf_dist.data import load_dataset, stratified_split
    from nf_dist.models import create_classifier
    from nf_dist.models.checkpoint import save_classifier
    from nf_dist.models.gan import GanSpec, build_gan
    from nf_dist.models.training import TrainConfig, train_classifier
    from nf_dist.storage.checkpoints import save_checkpoint

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("tiny_zoo")
    data = load_dataset(cifar_test_uri, cache_dir=folder / "cache")
    owner, other = (data.subset(i) for i in stratified_split(data.labels, [1500, 1500], seed=0))
    recipe = TrainConfig(epochs=2, batch_size=64, lr=0.05, crop_padding=2)
    torch.manual_seed(0)
    source = create_classifier("vgg13_bn", width=0.125, stem_stride=2)
    train_classifier(source, owner, recipe, progress=False)
    tuned = copy.deepcopy(source)
    train_classifier(
        tuned, owner, TrainConfig(epochs=1, batch_size=64, lr=0.005, seed=1), progress=False
    )
    negatives = []
    for seed, arch in ((2, "vgg13_bn"), (3, "resnet18")):
        torch.manual_seed(seed)
        model = create_classifier(arch, width=0.125, stem_stride=2)
        train_classifier(
            model, other, TrainConfig(epochs=2, batch_size=64, lr=0.05, seed=seed), progress=False
        )
        negatives.append(model)
    torch.manual_seed(0)
    generator, discriminator = build_gan(GanSpec(16, 10, 8, 8, False))
    tensors = {f"generator.{k}": v for k, v in generator.state_dict().items()}
    tensors |= {f"discriminator.{k}": v for k, v in discriminator.state_dict().items()}
    spec = {"z_dim": 16, "num_classes": 10, "g_channels": 8, "d_channels": 8, "attention": False}
    gan = save_checkpoint(
        str(folder / "gan"), tensors, {"kind": "gan", "spec": spec, "steps_done": 0}
    )
    positives = [source, tuned]
    return {
        "gan": gan,
        "generator": generator.eval(),
        "discriminator": discriminator.eval(),
        "positives": [m.eval() for m in positives],
        "negatives": [m.eval() for m in negatives],
        "positive_uris": [
            save_classifier(m, str(folder / f"pos{i}")) for i, m in enumerate(positives)
        ],
        "negative_uris": [
            save_classifier(m, str(folder / f"neg{i}")) for i, m in enumerate(negatives)
        ],
    }
