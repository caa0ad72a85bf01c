"""Where a latent optimisation's model gradients are computed, and opening/closing that place.

:class:`ShardingConfig` is the one sharding section every job config nests (``sharding:`` in
YAML); :func:`open_engine` turns it into a gradient engine for NaturalFinger's optimisation: the
single-process reference (``backend: local``) or Ray shard actors (``backend: ray``). Leaving the
``with`` block closes the engine, also on error: the actors are killed and their CPUs and GPUs
return to the cluster.

Example:
    >>> with open_engine(ShardingConfig(backend="ray", num_shards=2), white_box) as engine:
    ...     fingerprints = method.generate(context, config, RunOptions(engine=engine))
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from nf_dist.distributed.cluster import init_ray
from nf_dist.distributed.sharded import RayModelGradients, ShardAsks
from nf_dist.errors import ConfigError
from nf_dist.fingerprint.naturalfinger import LocalModelGradients, ModelGradients
from nf_dist.storage.uri import absolute_uri


@dataclass(frozen=True)
class ShardingConfig:
    """How a job spreads its white-box models over workers.

    Attributes:
        backend: ``local`` computes every model's gradient in this process (the reference);
            ``ray`` shards the models over ``num_shards`` Ray actors with the same result.
        num_shards: actors of the ``ray`` backend (one per GPU on a GPU cluster).
        cpus_per_shard: CPUs (and torch threads) each actor asks for.
        gpus_per_shard: GPUs each actor asks for (fractions share a device).
        address: Ray cluster address (None: ``RAY_ADDRESS`` or an embedded local Ray).
    """

    backend: Literal["local", "ray"] = "local"
    num_shards: int = 2
    cpus_per_shard: float = 1.0
    gpus_per_shard: float = 0.0
    address: str | None = None

    def __post_init__(self) -> None:
        if self.backend not in ("local", "ray"):
            raise ConfigError(f"sharding.backend must be local or ray, not {self.backend!r}")
        if self.num_shards < 1:
            raise ConfigError(f"sharding.num_shards must be at least 1, got {self.num_shards}")
        if not self.cpus_per_shard > 0:
            raise ConfigError(
                f"sharding.cpus_per_shard must be positive, got {self.cpus_per_shard}"
            )
        if self.gpus_per_shard < 0:
            raise ConfigError(f"sharding.gpus_per_shard must be >= 0, got {self.gpus_per_shard}")


@dataclass(frozen=True)
class WhiteBox:
    """The owner's GAN and models, loaded (for the local backend) and as checkpoint URIs (for
    actors, which load their own copies)."""

    generator: nn.Module
    discriminator: nn.Module
    positives: Sequence[nn.Module]
    negatives: Sequence[nn.Module]
    gan_uri: str
    positive_uris: Sequence[str]
    negative_uris: Sequence[str]


@contextmanager
def open_engine(
    sharding: ShardingConfig, white_box: WhiteBox, *, placement_group: Any = None
) -> Iterator[ModelGradients]:
    """The gradient engine ``sharding`` asks for, closed when the block is left.

    With ``placement_group`` (a Tune trial's), shard i runs in bundle i + 1.
    """
    if sharding.backend == "local":
        with LocalModelGradients(
            white_box.generator, white_box.positives, white_box.negatives, white_box.discriminator
        ) as local:
            yield local
        return
    init_ray(sharding.address)
    asks = ShardAsks(
        num_cpus=sharding.cpus_per_shard,
        num_gpus=sharding.gpus_per_shard,
        placement_group=placement_group,
    )
    with RayModelGradients(
        absolute_uri(white_box.gan_uri),
        [absolute_uri(u) for u in white_box.positive_uris],
        [absolute_uri(u) for u in white_box.negative_uris],
        sharding.num_shards,
        asks,
    ) as engine:
        engine.wait_ready()
        yield engine
