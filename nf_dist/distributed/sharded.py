"""Sharded latent optimisation on Ray: actors hold model shards, the driver aggregates gradients.

Each :class:`ShardActor` loads its share of the positive and negative models (from checkpoint
URIs, safe formats only) and a copy of the generator once. Every step the driver sends the current
latents and the step's plan; each actor whose models are in the step's mini-batch returns

    d/dz [ sum_{its positives} CW_mean / P  +  sum_{its negatives} CW_mean / Q ]

where P and Q are the step's positive and negative counts, so the shards' gradients add up to
exactly the reference's ``d(pos_loss + neg_loss)/dz``. The driver adds the discriminator term and
steps SGD (:func:`nf_dist.fingerprint.naturalfinger.descend`, shared with the reference).

What crosses the network per step: the latents ``N x z_dim`` float32 down and one gradient of the
same size up per active shard (N = 300, z_dim = 128: 150 KiB each way), plus a few numbers.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import ray
import torch

from nf_dist.errors import ConfigError, FingerprintError
from nf_dist.fingerprint.naturalfinger import (
    ModelStep,
    Objective,
    StepPlan,
    partial_model_gradient,
)
from nf_dist.models.checkpoint import load_classifier
from nf_dist.models.gan.train import load_gan
from nf_dist.storage.checkpoints import WEIGHTS_SUFFIX
from nf_dist.telemetry import metrics

logger = logging.getLogger(__name__)


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


def _weight_bytes(uri: str) -> float:
    """A model's placement cost: the size of its weights (a proxy for its compute); 1 if unknown."""
    try:
        return float(fsspec.core.url_to_fs(uri + WEIGHTS_SUFFIX)[0].size(uri + WEIGHTS_SUFFIX))
    except (OSError, ValueError):
        return 1.0


class ShardActor:
    """Holds a generator copy and some classifiers; returns latent gradients of their loss."""

    def __init__(
        self,
        shard_id: int,
        gan_uri: str,
        positive_uris: dict[int, str],
        negative_uris: dict[int, str],
        labels: tuple[np.ndarray, np.ndarray, np.ndarray],
        objective: Objective,
        num_threads: int = 1,
    ) -> None:
        torch.set_num_threads(num_threads)
        self.shard_id = shard_id
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        generator, _, _ = load_gan(gan_uri, device=self.device)
        self.generator = generator
        self.positives = {i: load_classifier(u, self.device)[0] for i, u in positive_uris.items()}
        self.negatives = {i: load_classifier(u, self.device)[0] for i, u in negative_uris.items()}
        for module in [generator, *self.positives.values(), *self.negatives.values()]:
            module.eval().requires_grad_(False)
        # Everything an actor needs comes through its constructor, so a restarted actor (after
        # its process died) is whole again and Ray can retry the step it lost.
        self.targets = {
            name: torch.as_tensor(np.array(array), device=self.device)
            for name, array in zip(("y_gen", "y_orig", "y_adv"), labels)
        }
        self.objective = objective

    def ready(self) -> tuple[int, int]:
        """A readiness check: (shard id, process id)."""
        return self.shard_id, os.getpid()

    def step(
        self,
        z: np.ndarray,
        positives: Sequence[int],
        negatives: Sequence[int],
        transform: Any,
        num_positive: int,
        num_negative: int,
    ) -> dict[str, Any]:
        """The gradient of this shard's part of the step's model loss; see the module docstring."""
        grad, pos, neg = partial_model_gradient(
            self.generator,
            torch.as_tensor(np.array(z), device=self.device),
            self.targets["y_gen"],
            transform,
            [self.positives[i] for i in positives],
            [self.negatives[i] for i in negatives],
            self.targets["y_orig"],
            self.targets["y_adv"],
            self.objective,
            num_positive,
            num_negative,
        )
        return {
            "grad": grad.detach().cpu().numpy(),
            "positive_sum": float(pos.total.detach()),
            "negative_sum": float(neg.total.detach()),
            "positive_hits": pos.hits.cpu().numpy(),
            "negative_hits": neg.hits.cpu().numpy(),
            "positive_losses": pos.losses.cpu().numpy(),
            "negative_losses": neg.losses.cpu().numpy(),
        }


class RayModelGradients:
    """The sharded engine: the same :class:`ModelStep` as the reference, from Ray actors."""

    def __init__(
        self,
        gan_uri: str,
        positive_uris: Sequence[str],
        negative_uris: Sequence[str],
        num_shards: int,
        labels: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        objective: Objective,
        *,
        num_cpus_per_shard: float = 1.0,
        num_gpus_per_shard: float = 0.0,
        max_restarts: int = 3,
        start_timeout_s: float = 600.0,
        placement_group: Any = None,
        first_bundle: int = 1,
    ) -> None:
        costs = [_weight_bytes(uri) for uri in [*positive_uris, *negative_uris]]
        self.shards = place_models(len(positive_uris), len(negative_uris), num_shards, costs)
        self.start_timeout_s = start_timeout_s
        if placement_group is None:
            # Actors hold their CPUs for life: asking for more than the cluster has waits forever.
            total = ray.cluster_resources()
            for name, each in (("CPU", num_cpus_per_shard), ("GPU", num_gpus_per_shard)):
                if each * len(self.shards) > total.get(name, 0.0) + 1e-9:
                    raise ConfigError(
                        f"{len(self.shards)} shards x {each:g} {name} exceed the cluster's "
                        f"{total.get(name, 0.0):g} {name}; lower num_shards or the per-shard ask"
                    )
        elif first_bundle + len(self.shards) > len(placement_group.bundle_specs):
            raise ConfigError(
                f"{len(self.shards)} shards need bundles {first_bundle}.."
                f"{first_bundle + len(self.shards) - 1} of a placement group with "
                f"{len(placement_group.bundle_specs)}"
            )
        remote_class = ray.remote(ShardActor)

        def placed(shard_id: int) -> Any:
            """The actor class with its asks; pinned to its own bundle when a placement group
            reserves them (a Tune trial's), so the trial's actors never compete with others."""
            options: dict[str, Any] = {
                "num_cpus": num_cpus_per_shard,
                "num_gpus": num_gpus_per_shard,
                "max_restarts": max_restarts,
                "max_task_retries": max_restarts,
            }
            if placement_group is not None:
                from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

                options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                    placement_group, placement_group_bundle_index=first_bundle + shard_id
                )
            return remote_class.options(**options)  # type: ignore[attr-defined]

        self.actors: list[Any] = [
            placed(shard_id).remote(
                shard_id,
                gan_uri,
                {i: positive_uris[i] for i in spec.positives},
                {i: negative_uris[i] for i in spec.negatives},
                tuple(label.numpy() for label in labels),
                objective,
                max(1, int(num_cpus_per_shard)),
            )
            for shard_id, spec in enumerate(self.shards)
        ]
        self._owner = {("p", i): s for s, spec in enumerate(self.shards) for i in spec.positives}
        self._owner |= {("n", i): s for s, spec in enumerate(self.shards) for i in spec.negatives}

    def wait_ready(self) -> list[tuple[int, int]]:
        """Wait until every actor has loaded its models; returns (shard id, pid) per actor."""
        try:
            return ray.get(
                [actor.ready.remote() for actor in self.actors], timeout=self.start_timeout_s
            )
        except ray.exceptions.GetTimeoutError:
            raise FingerprintError(
                f"shard actors did not start within {self.start_timeout_s:g} s: the cluster has "
                "no free resources for them (other actors or tasks hold them)"
            ) from None

    def __call__(self, z: torch.Tensor, plan: StepPlan) -> ModelStep:
        started = time.perf_counter()
        latents = z.detach().cpu().numpy()
        calls = []
        for shard_id, actor in enumerate(self.actors):
            positives = [i for i in plan.positives if self._owner[("p", i)] == shard_id]
            negatives = [i for i in plan.negatives if self._owner[("n", i)] == shard_id]
            if positives or negatives:
                ref = actor.step.remote(
                    latents,
                    positives,
                    negatives,
                    plan.transform,
                    len(plan.positives),
                    len(plan.negatives),
                )
                calls.append((shard_id, positives, negatives, ref))
        results = self._gather(calls, started)
        grad = torch.zeros_like(z)
        positive = negative = 0.0
        hits: dict[tuple[str, int], float] = {}
        losses: dict[tuple[str, int], float] = {}
        for (shard_id, positives, negatives, _), result in zip(calls, results):
            part = torch.from_numpy(np.array(result["grad"]))
            if (
                not torch.isfinite(part).all()
                or not np.isfinite([result["positive_sum"], result["negative_sum"]]).all()
            ):
                raise FingerprintError(
                    f"shard {shard_id} returned a non-finite loss or gradient for positives "
                    f"{positives} and negatives {negatives}; check those models and lower "
                    "fingerprint.lr"
                )
            grad += part
            positive += result["positive_sum"]
            negative += result["negative_sum"]
            hits |= {("p", i): h for i, h in zip(positives, result["positive_hits"])}
            hits |= {("n", i): h for i, h in zip(negatives, result["negative_hits"])}
            losses |= {("p", i): v for i, v in zip(positives, result["positive_losses"])}
            losses |= {("n", i): v for i, v in zip(negatives, result["negative_losses"])}
        keys = [("p", i) for i in plan.positives] + [("n", i) for i in plan.negatives]
        step = ModelStep(
            grad,
            positive / len(plan.positives),
            negative / len(plan.negatives),
            torch.tensor([hits[key] for key in keys]),
            torch.tensor([losses[key] for key in keys]),
        )
        metrics.LATENT_STEPS.inc()
        metrics.LATENT_STEPS_PER_SECOND.set(1.0 / max(time.perf_counter() - started, 1e-9))
        metrics.LATENT_LOSS.labels("positive").set(step.positive)
        metrics.LATENT_LOSS.labels("negative").set(step.negative)
        metrics.LATENT_SUCCESS_RATIO.set(float(step.hits.mean()))
        return step

    def _gather(self, calls: list[tuple[int, Any, Any, Any]], started: float) -> list[Any]:
        """Results in call order, timing each shard as its gradient arrives."""
        pending = {ref: shard_id for shard_id, _, _, ref in calls}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            shard_id = pending.pop(done[0])
            metrics.LATENT_SHARD_SECONDS.labels(str(shard_id)).observe(
                time.perf_counter() - started
            )
        return ray.get([ref for *_, ref in calls])

    def shutdown(self) -> None:
        """Stop the actors."""
        for actor in self.actors:
            ray.kill(actor)


def ray_engine_factory(
    config: Any,
    positive_uris: Sequence[str],
    negative_uris: Sequence[str],
    placement_group: Any = None,
) -> Any:
    """The engine factory for a :class:`~nf_dist.pipelines.fingerprint.FingerprintJobConfig` with
    ``engine: ray``: starts (or joins) Ray and the shard actors once the labels are known.
    With ``placement_group`` (a Tune trial's), shard i runs in bundle i + 1."""
    from nf_dist.distributed.cluster import init_ray
    from nf_dist.storage.uri import absolute_uri

    def build(y_gen: torch.Tensor, y_orig: torch.Tensor, y_adv: torch.Tensor) -> RayModelGradients:
        init_ray(config.address)
        engine = RayModelGradients(
            absolute_uri(config.gan_uri),
            [absolute_uri(u) for u in positive_uris],
            [absolute_uri(u) for u in negative_uris],
            config.num_shards,
            (y_gen, y_orig, y_adv),
            Objective.of(config.fingerprint),
            num_cpus_per_shard=config.cpus_per_shard,
            num_gpus_per_shard=config.gpus_per_shard,
            placement_group=placement_group,
        )
        engine.wait_ready()
        return engine

    return build
