"""Where the sharded engine's models go: a cost-balanced split of the positive and negative
models over the shard actors (longest processing time first)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import fsspec

from nf_dist.storage.checkpoints import WEIGHTS_SUFFIX


@dataclass(frozen=True)
class ShardSpec:
    """Which models one actor holds: global indices into the positive and negative lists."""

    positives: tuple[int, ...]
    negatives: tuple[int, ...]


def place_models(
    num_positive: int, num_negative: int, num_shards: int, costs: Sequence[float] | None = None
) -> list[ShardSpec]:
    """Spread the models over shards, balanced by cost (longest-processing-time first).

    ``costs`` gives one relative cost per model, positives first (default: all equal). Positives
    and negatives are placed together so every shard gets a similar share of each step's work.
    """
    num_shards = max(1, min(num_shards, num_positive + num_negative))
    models = [("p", i) for i in range(num_positive)] + [("n", i) for i in range(num_negative)]
    weights = list(costs) if costs is not None else [1.0] * len(models)
    load = [0.0] * num_shards
    assigned: list[list[tuple[str, int]]] = [[] for _ in range(num_shards)]
    for index in sorted(range(len(models)), key=lambda i: (-weights[i], i)):
        target = min(range(num_shards), key=lambda s: (load[s], s))
        assigned[target].append(models[index])
        load[target] += weights[index]
    return [
        ShardSpec(
            tuple(sorted(i for kind, i in shard if kind == "p")),
            tuple(sorted(i for kind, i in shard if kind == "n")),
        )
        for shard in assigned
    ]


def weight_bytes(uri: str) -> float:
    """A model's placement cost: the size of its weights (a proxy for its compute); 1 if unknown."""
    try:
        return float(fsspec.core.url_to_fs(uri + WEIGHTS_SUFFIX)[0].size(uri + WEIGHTS_SUFFIX))
    except (OSError, ValueError):
        return 1.0
