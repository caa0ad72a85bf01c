"""Train one classifier or one GAN on a training half: ``nf-dist train`` and ``nf-dist gan train``.

Each job is a frozen config plus a ``run_*`` function; the CLI and ``jobs/*.py`` only parse
arguments and call these. ``workers.num`` >= 1 runs the same training data-parallel on Ray Train
(:mod:`nf_dist.distributed.train`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

import torch

from nf_dist.data import DataConfig, load_splits
from nf_dist.data.readers import ImageDataset
from nf_dist.distributed.train import (
    ClassifierRun,
    GanRun,
    WorkersConfig,
    train_classifier_on_ray,
    train_gan_on_ray,
)
from nf_dist.models import create_classifier
from nf_dist.models.checkpoint import save_classifier
from nf_dist.models.gan import GanTrainConfig, save_sample_grid, train_gan
from nf_dist.models.inference import accuracy
from nf_dist.models.training import TrainConfig, train_classifier

logger = logging.getLogger(__name__)


def load_half(data: DataConfig, half: Literal["a", "b"]) -> tuple[ImageDataset, ImageDataset]:
    """The requested training half and the held-out test set of the paper's split."""
    splits = load_splits(data, with_query=False)
    return splits.half(half), splits.test


@dataclass(frozen=True)
class TrainJobConfig:
    """``nf-dist train``: one classifier from scratch on a training half.

    ``workers.num`` 0 trains in this process; N >= 1 trains data-parallel on N Ray Train
    workers (:mod:`nf_dist.distributed.train`), restarting from the latest checkpoint on failure.
    """

    output_uri: str = "runs/train/model"
    data: DataConfig = field(default_factory=DataConfig)
    data_half: Literal["a", "b"] = "a"
    arch: str = "resnet18"
    width: float = 0.25
    stem_stride: int = 2
    seed: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)
    workers: WorkersConfig = field(default_factory=WorkersConfig)


def run_train(config: TrainJobConfig, *, progress: bool = True) -> float:
    """Train, evaluate and checkpoint; returns the test accuracy."""
    if config.workers.num > 0:
        run = ClassifierRun(
            config.output_uri,
            config.data,
            config.data_half,
            config.arch,
            config.width,
            config.stem_stride,
            config.seed,
            config.train,
            config.workers,
        )
        return train_classifier_on_ray(run)[1]
    half, test = load_half(config.data, config.data_half)
    torch.manual_seed(config.seed)
    model = create_classifier(config.arch, half.num_classes, config.width, config.stem_stride)
    train_classifier(model, half, config.train, progress=progress, description=config.arch)
    acc = accuracy(model, test)
    save_classifier(model, config.output_uri, train=config.train.__dict__, test_accuracy=acc)
    logger.info("saved %s (test accuracy %.3f)", config.output_uri, acc)
    return acc


@dataclass(frozen=True)
class GanJobConfig:
    """``nf-dist gan train``: a class-conditional GAN on a training half.

    ``workers.num`` N >= 1 trains data-parallel on N Ray Train workers (see ``WorkersConfig``).
    """

    output_uri: str = "runs/gan/gan"
    data: DataConfig = field(default_factory=DataConfig)
    data_half: Literal["a", "b"] = "a"
    gan: GanTrainConfig = field(default_factory=GanTrainConfig)
    workers: WorkersConfig = field(default_factory=WorkersConfig)


def run_gan(config: GanJobConfig, *, progress: bool = True) -> str:
    """Train (or resume) the GAN, write a sample grid; returns the grid's path."""
    if config.workers.num > 0:
        train_gan_on_ray(
            GanRun(config.output_uri, config.data, config.data_half, config.gan, config.workers)
        )
    half, _ = load_half(config.data, config.data_half)
    result = train_gan(half.images, half.labels, config.gan, config.output_uri, progress=progress)
    return save_sample_grid(
        result.ema_generator or result.generator, config.output_uri + "_samples.png"
    )
