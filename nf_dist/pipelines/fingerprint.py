"""Generate one NaturalFinger fingerprint set: ``nf-dist fingerprint``.

The job config names the GAN, the white-box models (checkpoint URIs, or ids of a built
benchmark) and the engine; :func:`run_fingerprint` runs it and writes the Parquet set with a PNG
preview beside it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from nf_dist.errors import ConfigError
from nf_dist.fingerprint.fingerprint_set import FingerprintSet, save_fingerprint_set, save_grid
from nf_dist.fingerprint.naturalfinger import NaturalFingerConfig, StepObserver, generate
from nf_dist.models.checkpoint import load_classifier
from nf_dist.models.gan.train import load_gan

logger = logging.getLogger(__name__)


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
