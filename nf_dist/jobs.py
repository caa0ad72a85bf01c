"""The single-machine jobs behind the CLI: train a classifier, train a GAN, generate a fingerprint.

Each job is a frozen config plus a ``run_*`` function; the CLI and ``jobs/*.py`` only parse
arguments and call these.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from nf_dist.data import DataConfig, load_splits
from nf_dist.data.readers import ImageDataset
from nf_dist.errors import ConfigError
from nf_dist.fingerprint.fingerprint_set import FingerprintSet, save_fingerprint_set, save_grid
from nf_dist.fingerprint.naturalfinger import NaturalFingerConfig, StepObserver, generate
from nf_dist.models import create_classifier
from nf_dist.models.checkpoint import load_classifier, save_classifier
from nf_dist.models.gan import GanTrainConfig, save_sample_grid, train_gan
from nf_dist.models.gan.train import load_gan
from nf_dist.models.inference import accuracy
from nf_dist.models.training import TrainConfig, train_classifier

logger = logging.getLogger(__name__)


def load_half(data: DataConfig, half: Literal["a", "b"]) -> tuple[ImageDataset, ImageDataset]:
    """The requested training half and the held-out test set of the paper's split."""
    splits = load_splits(data, with_query=False)
    return splits.half(half), splits.test


@dataclass(frozen=True)
class WorkersConfig:
    """Data-parallel training on Ray Train workers (``num`` 0: train in this process).

    Attributes:
        num: number of workers (``--workers N``).
        cpus_per_worker: CPUs (and torch threads) per worker.
        use_gpu: one GPU per worker (NCCL); gloo on CPUs otherwise.
        max_failures: worker-group restarts from the latest checkpoint before giving up.
        address: Ray cluster address (None: ``RAY_ADDRESS`` or an embedded local Ray).
    """

    num: int = 0
    cpus_per_worker: int = 1
    use_gpu: bool = False
    max_failures: int = 2
    address: str | None = None

    def __post_init__(self) -> None:
        if self.num < 0 or self.cpus_per_worker < 1 or self.max_failures < 0:
            raise ConfigError(
                "workers: num >= 0, cpus_per_worker >= 1 and max_failures >= 0 are required"
            )


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
        from nf_dist.distributed.train import train_classifier_on_ray

        return train_classifier_on_ray(config, progress=progress)[1]
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
        from nf_dist.distributed.train import train_gan_on_ray

        train_gan_on_ray(config)
    half, _ = load_half(config.data, config.data_half)
    result = train_gan(half.images, half.labels, config.gan, config.output_uri, progress=progress)
    return save_sample_grid(
        result.ema_generator or result.generator, config.output_uri + "_samples.png"
    )


@dataclass(frozen=True)
class FingerprintJobConfig:
    """``nf-dist fingerprint``: NaturalFinger from a GAN and white-box positive/negative models.

    ``positives`` and ``negatives`` are checkpoint URIs, or model ids of the FingerBench build at
    ``bench_uri``. ``engine: local`` optimises in this process (the reference); ``engine: ray``
    shards the models over ``num_shards`` Ray actors, each asking for ``cpus_per_shard`` CPUs and
    ``gpus_per_shard`` GPUs (1 per actor on a GPU cluster), and gives the same fingerprints.
    The optimisation is checkpointed every ``checkpoint_every`` steps beside the output
    (``<output>.progress``); re-running a killed job resumes from there. ``metrics_port`` serves
    Prometheus metrics (steps per second, per-shard gradient latency, loss terms, success).
    """

    output_uri: str = "runs/fingerprint/fingerprint.parquet"
    gan_uri: str = ""
    bench_uri: str | None = None
    positives: tuple[str, ...] = ()
    negatives: tuple[str, ...] = ()
    engine: Literal["local", "ray"] = "local"
    num_shards: int = 2
    cpus_per_shard: float = 1.0
    gpus_per_shard: float = 0.0
    address: str | None = None
    checkpoint_every: int = 50
    metrics_port: int | None = None
    fingerprint: NaturalFingerConfig = field(default_factory=NaturalFingerConfig)


def nested_fingerprint_job(
    source: Any, output_uri: str, gan_uri: str, settings: NaturalFingerConfig
) -> FingerprintJobConfig:
    """The fingerprint job a larger job runs (an experiment's set, an ablation variant, a Tune
    trial): ``source``'s benchmark, models, engine, shard asks and address, with this output,
    GAN and NaturalFinger settings."""
    return FingerprintJobConfig(
        output_uri=output_uri,
        gan_uri=gan_uri,
        bench_uri=source.bench_uri,
        positives=source.positives,
        negatives=source.negatives,
        engine=source.engine,
        num_shards=source.num_shards,
        cpus_per_shard=source.cpus_per_shard,
        gpus_per_shard=source.gpus_per_shard,
        address=source.address,
        fingerprint=settings,
    )


def model_uris(config: FingerprintJobConfig) -> tuple[list[str], list[str]]:
    """Checkpoint URIs of the positives and negatives: as given, or resolved from the ids of the
    benchmark at ``bench_uri`` (unknown ids are an error naming them)."""
    if config.bench_uri is None:
        return list(config.positives), list(config.negatives)
    from nf_dist.bench import load
    from nf_dist.bench.store import BenchStore

    known = set(load(config.bench_uri).ids())
    missing = [i for i in (*config.positives, *config.negatives) if i not in known]
    if missing:
        raise ConfigError(f"{config.bench_uri} has no model {missing[0]!r}; see its manifest")
    store = BenchStore(config.bench_uri)
    return (
        [store.model_stem(i) for i in config.positives],
        [store.model_stem(i) for i in config.negatives],
    )


def run_fingerprint(
    config: FingerprintJobConfig,
    *,
    progress: bool = True,
    on_step: StepObserver | None = None,
    placement_group: Any = None,
) -> FingerprintSet:
    """Generate, save the Parquet set and a PNG grid beside it; returns the set.

    ``on_step`` observes the optimisation (see :func:`~nf_dist.fingerprint.naturalfinger.generate`);
    ``placement_group`` pins the shard actors of ``engine: ray`` to its bundles 1..num_shards.
    """
    if not config.gan_uri or not config.positives or not config.negatives:
        raise ConfigError(
            "fingerprint needs gan_uri, positives and negatives (checkpoint URIs, or model ids "
            "of the benchmark at bench_uri)"
        )
    positive_uris, negative_uris = model_uris(config)
    generator, discriminator, meta = load_gan(config.gan_uri)
    positives = [load_classifier(uri)[0] for uri in positive_uris]
    negatives = [load_classifier(uri)[0] for uri in negative_uris]
    spec = meta["spec"]
    if config.metrics_port is not None:
        from nf_dist.telemetry.metrics import serve_metrics

        serve_metrics(config.metrics_port)
    engine = None
    if config.engine == "ray":
        from nf_dist.distributed.sharded import ray_engine_factory

        engine = ray_engine_factory(config, positive_uris, negative_uris, placement_group)
    fingerprints = generate(
        generator,
        discriminator,
        positives,
        negatives,
        config.fingerprint,
        z_dim=int(spec["z_dim"]),
        num_classes=int(spec["num_classes"]),
        progress=progress,
        engine=engine,
        checkpoint_uri=config.output_uri.removesuffix(".parquet") + ".progress",
        checkpoint_every=config.checkpoint_every,
        on_step=on_step,
    )
    fingerprints.info.update(
        positives=list(config.positives), negatives=list(config.negatives), gan_uri=config.gan_uri
    )
    save_fingerprint_set(fingerprints, config.output_uri)
    save_grid(fingerprints.images, config.output_uri.removesuffix(".parquet") + ".png")
    return fingerprints
