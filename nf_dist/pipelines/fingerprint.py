"""Generate one fingerprint set: ``nf-dist fingerprint`` and the path every other job takes.

:func:`generate_set` is the one way a job makes a set of any registered method: it loads the
owner's white-box models (and GAN, for generative methods), opens the gradient engine the
``sharding`` section asks for when the method optimises latents, runs the method and closes the
engine. :func:`run_fingerprint` is the ``nf-dist fingerprint`` job around it for NaturalFinger:
checkpointed, resumable, the Parquet set and a PNG preview written as artefacts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

from nf_dist.bench.selection import ModelSelection
from nf_dist.data.readers import ImageDataset
from nf_dist.distributed.engines import ShardingConfig, WhiteBox, open_engine
from nf_dist.errors import ConfigError
from nf_dist.fingerprint.fingerprint_set import FingerprintSet, save_fingerprint_set, save_grid
from nf_dist.fingerprint.methods import METHODS, FingerprintContext
from nf_dist.fingerprint.methods.base import RunOptions, StepObserver
from nf_dist.fingerprint.naturalfinger import Checkpointing, NaturalFingerConfig
from nf_dist.models.gan.train import load_gan
from nf_dist.storage.artifacts import sibling
from nf_dist.telemetry.metrics import serve_metrics

logger = logging.getLogger(__name__)

#: The flat keys of the first release, now in the ``models`` and ``sharding`` sections.
MOVED_KEYS = {
    "bench_uri": "models.bench_uri",
    "positives": "models.positives",
    "negatives": "models.negatives",
    "engine": "sharding.backend",
    "num_shards": "sharding.num_shards",
    "cpus_per_shard": "sharding.cpus_per_shard",
    "gpus_per_shard": "sharding.gpus_per_shard",
    "address": "sharding.address",
}


@dataclass(frozen=True)
class OwnerAssets:
    """What the owner fingerprints with: white-box models, a GAN (generative methods) and clean
    labelled images (methods that start from real data)."""

    models: ModelSelection
    gan_uri: str | None = None
    clean: ImageDataset | None = None


def generate_set(
    method: str,
    settings: Any,
    assets: OwnerAssets,
    sharding: ShardingConfig,
    *,
    progress: bool = False,
    checkpointing: Checkpointing | None = None,
    on_step: StepObserver | None = None,
    placement_group: Any = None,
) -> FingerprintSet:
    """Run the registered ``method`` with ``settings`` on the owner's assets.

    A method that ``needs_gan`` optimises latents through the engine ``sharding`` opens (closed
    when it returns, also on error); ``placement_group`` pins shard actors to a Tune trial's
    bundles 1..num_shards.

    Raises:
        ConfigError: no models, or no GAN for a generative method.
    """
    kind = METHODS.get(method)
    assets.models.require()
    positive_uris, negative_uris = assets.models.uris()
    positives, negatives = assets.models.load()
    screening_positives, screening_negatives = assets.models.load_screening()
    context = FingerprintContext(
        positives,
        negatives,
        screening_positives=screening_positives,
        screening_negatives=screening_negatives,
        clean=assets.clean,
        progress=progress,
    )
    if not kind.needs_gan:
        return kind().generate(context, settings, RunOptions(on_step=on_step))
    if not assets.gan_uri:
        raise ConfigError(f"{method} needs a GAN: set gan_uri")
    generator, discriminator, meta = load_gan(assets.gan_uri)
    context.generator, context.discriminator = generator, discriminator
    context.z_dim, context.num_classes = (
        int(meta["spec"]["z_dim"]),
        int(meta["spec"]["num_classes"]),
    )
    white_box = WhiteBox(
        generator,
        discriminator,
        context.positives,
        context.negatives,
        assets.gan_uri,
        positive_uris,
        negative_uris,
    )
    with open_engine(sharding, white_box, placement_group=placement_group) as engine:
        run = RunOptions(engine=engine, checkpointing=checkpointing, on_step=on_step)
        return kind().generate(context, settings, run)


@dataclass(frozen=True)
class FingerprintJobConfig:
    """``nf-dist fingerprint``: NaturalFinger from a GAN and the owner's white-box models.

    Attributes:
        output_uri: the Parquet set; its preview, progress and record go beside it.
        gan_uri: the GAN checkpoint.
        models: the positive and negative models (see :class:`ModelSelection`).
        sharding: where the models' gradients are computed (see :class:`ShardingConfig`); the
            ``ray`` backend gives the same fingerprints as ``local``.
        checkpoint_every: save the optimisation every so many steps; re-running a killed job
            resumes from the last save.
        metrics_port: serve Prometheus metrics (steps per second, per-shard gradient latency,
            loss terms, success) on this port (0: any free one).
        fingerprint: NaturalFinger's settings.
    """

    MOVED_KEYS: ClassVar[dict[str, str]] = MOVED_KEYS

    output_uri: str = "runs/fingerprint/fingerprint.parquet"
    gan_uri: str = ""
    models: ModelSelection = field(default_factory=ModelSelection)
    sharding: ShardingConfig = field(default_factory=ShardingConfig)
    checkpoint_every: int = 50
    metrics_port: int | None = None
    fingerprint: NaturalFingerConfig = field(default_factory=NaturalFingerConfig)

    def __post_init__(self) -> None:
        if self.checkpoint_every < 1:
            raise ConfigError(
                f"checkpoint_every must be at least 1 (steps between saves), got "
                f"{self.checkpoint_every}"
            )


def run_fingerprint(
    config: FingerprintJobConfig,
    *,
    progress: bool = True,
    on_step: StepObserver | None = None,
    placement_group: Any = None,
) -> FingerprintSet:
    """Generate, save the Parquet set and a PNG preview beside it; returns the set.

    ``on_step`` observes the optimisation (see :class:`RunOptions`).
    """
    if not config.gan_uri:
        raise ConfigError("fingerprint needs gan_uri (a GAN checkpoint)")
    if config.metrics_port is not None:
        serve_metrics(config.metrics_port)
    fingerprints = generate_set(
        "naturalfinger",
        config.fingerprint,
        OwnerAssets(config.models, config.gan_uri),
        config.sharding,
        progress=progress,
        checkpointing=Checkpointing(
            sibling(config.output_uri, "progress"), config.checkpoint_every
        ),
        on_step=on_step,
        placement_group=placement_group,
    )
    fingerprints.info.update(
        positives=list(config.models.positives),
        negatives=list(config.models.negatives),
        screening_positives=list(config.models.screening_positives),
        screening_negatives=list(config.models.screening_negatives),
        gan_uri=config.gan_uri,
    )
    save_fingerprint_set(fingerprints, config.output_uri)
    save_grid(fingerprints.images, sibling(config.output_uri, "preview"))
    return fingerprints
