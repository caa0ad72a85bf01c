"""Sharded latent optimisation on Ray: actors hold model shards, the driver aggregates gradients.

Each :class:`ShardActor` loads its share of the positive and negative models (from checkpoint
URIs, safe formats only) and a copy of the generator once; shard 0 also loads the discriminator.
Every step the driver sends the current latents and the step's plan; each actor whose models are
in the step's mini-batch returns

    d/dz [ sum_{its positives} CW_mean / P  +  sum_{its negatives} CW_mean / Q ]

where P and Q are the step's positive and negative counts, and shard 0 adds ``lambda_d`` times
the discriminator term's gradient (on the same pass of its generator), so the shards' gradients
add up to exactly the reference's. The driver only steps SGD on the sum
(:func:`nf_dist.fingerprint.naturalfinger.optimise`, shared with the reference): it runs no
network, so a CPU-only head can drive GPU actors.

What crosses the network per step: the latents ``N x z_dim`` float32 and the targets (3 x N
integers) down (and D's labels, N integers, to shard 0), one gradient of the latents' size up per
active shard (N = 300, z_dim = 128: 150 KiB each way), plus a few numbers. The engine is a
context manager: leaving its block kills the actors, which gives their CPUs and GPUs back.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray
import torch
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from nf_dist.distributed.placement import place_models, weight_bytes
from nf_dist.errors import ConfigError, FingerprintError
from nf_dist.fingerprint.naturalfinger import (
    Critic,
    ModelStep,
    Objective,
    StepModels,
    StepPlan,
    Targets,
    channels_last,
    partial_model_gradient,
)
from nf_dist.models.checkpoint import load_classifier
from nf_dist.models.gan.train import load_gan
from nf_dist.telemetry import metrics

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardResult:
    """One shard's part of a step: the gradient ``(N, z_dim)`` of its models' loss (and of the
    weighted discriminator term when asked), the sums of their mean CW losses, per model (in the
    order asked) the hits and mean losses, and the mean discriminator term (0 if not asked)."""

    grad: np.ndarray
    positive_sum: float
    negative_sum: float
    positive_hits: np.ndarray
    negative_hits: np.ndarray
    positive_losses: np.ndarray
    negative_losses: np.ndarray
    discriminator: float = 0.0

    def finite(self) -> bool:
        """Whether the gradient and the loss terms are finite."""
        sums = np.array([self.positive_sum, self.negative_sum, self.discriminator])
        return bool(np.isfinite(self.grad).all() and np.isfinite(sums).all())


@dataclass(frozen=True)
class ShardCall:
    """What the driver asks one shard for in one step."""

    positives: tuple[int, ...]
    negatives: tuple[int, ...]
    num_positive: int
    num_negative: int


class ShardActor:
    """Holds a generator copy, some classifiers and, with ``holds_discriminator``, the
    discriminator; returns latent gradients of their loss."""

    def __init__(
        self,
        shard_id: int,
        gan_uri: str,
        positive_uris: dict[int, str],
        negative_uris: dict[int, str],
        num_threads: int = 1,
        holds_discriminator: bool = False,
    ) -> None:
        torch.set_num_threads(num_threads)
        self.shard_id = shard_id
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        generator, discriminator, _ = load_gan(gan_uri, device=self.device)
        self.generator = generator
        self.discriminator = discriminator if holds_discriminator else None
        self.positives = {i: load_classifier(u, self.device)[0] for i, u in positive_uris.items()}
        self.negatives = {i: load_classifier(u, self.device)[0] for i, u in negative_uris.items()}
        classifiers = [*self.positives.values(), *self.negatives.values()]
        for module in [generator, discriminator, *classifiers]:
            channels_last(module.eval().requires_grad_(False))
        # Everything an actor needs comes through its constructor or each call, so a restarted
        # actor (after its process died) is whole again and Ray can retry the step it lost.

    def ready(self) -> tuple[int, int]:
        """A readiness check: (shard id, process id)."""
        return self.shard_id, os.getpid()

    def step(
        self,
        z: np.ndarray,
        targets: np.ndarray,
        transform: Any,
        call: ShardCall,
        objective: Objective,
        critic_labels: np.ndarray | None = None,
    ) -> ShardResult:
        """The gradient of this shard's part of the step's loss; see the module docstring.

        ``targets`` is ``(3, N)``: generator classes, y_orig, y_adv; ``critic_labels`` (N,) asks
        this shard (which must hold the discriminator) for the discriminator term.
        """
        labels = torch.as_tensor(np.array(targets), device=self.device)
        critic = None
        if critic_labels is not None:
            if self.discriminator is None:
                raise FingerprintError(f"shard {self.shard_id} holds no discriminator")
            critic = Critic(
                self.discriminator, torch.as_tensor(np.array(critic_labels), device=self.device)
            )
        models = StepModels(
            [self.positives[i] for i in call.positives],
            [self.negatives[i] for i in call.negatives],
            call.num_positive,
            call.num_negative,
        )
        grad, pos, neg, disc = partial_model_gradient(
            self.generator,
            torch.as_tensor(np.array(z), device=self.device),
            Targets(labels[0], labels[1], labels[2]),
            transform,
            models,
            objective,
            critic,
        )
        return ShardResult(
            grad.detach().cpu().numpy(),
            float(pos.total.detach()),
            float(neg.total.detach()),
            pos.hits.cpu().numpy(),
            neg.hits.cpu().numpy(),
            pos.losses.cpu().numpy(),
            neg.losses.cpu().numpy(),
            float(disc),
        )


#: The shard that holds the discriminator and computes its term.
CRITIC_SHARD = 0


@dataclass(frozen=True)
class ShardAsks:
    """What each shard actor asks the cluster for, and where it may run."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    max_restarts: int = 3
    start_timeout_s: float = 600.0
    placement_group: Any = None
    first_bundle: int = 1


class RayModelGradients:
    """The sharded engine: the same :class:`ModelStep` as the reference, from Ray actors.

    Use it as a context manager (or call :meth:`shutdown`): leaving the block kills the actors.
    """

    def __init__(
        self,
        gan_uri: str,
        positive_uris: Sequence[str],
        negative_uris: Sequence[str],
        num_shards: int,
        asks: ShardAsks = ShardAsks(),
    ) -> None:
        self.num_positive, self.num_negative = len(positive_uris), len(negative_uris)
        costs = [weight_bytes(uri) for uri in [*positive_uris, *negative_uris]]
        self.shards = place_models(len(positive_uris), len(negative_uris), num_shards, costs)
        self.start_timeout_s = asks.start_timeout_s
        _check_capacity(asks, len(self.shards))
        remote_class = ray.remote(ShardActor)

        def placed(shard_id: int) -> Any:
            """The actor class with its asks; pinned to its own bundle when a placement group
            reserves them (a Tune trial's), so the trial's actors never compete with others."""
            options: dict[str, Any] = {
                "num_cpus": asks.num_cpus,
                "num_gpus": asks.num_gpus,
                "max_restarts": asks.max_restarts,
                "max_task_retries": asks.max_restarts,
            }
            if asks.placement_group is not None:
                options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                    asks.placement_group,
                    placement_group_bundle_index=asks.first_bundle + shard_id,
                )
            return remote_class.options(**options)  # type: ignore[attr-defined]

        self.actors: list[Any] = [
            placed(shard_id).remote(
                shard_id,
                gan_uri,
                {i: positive_uris[i] for i in spec.positives},
                {i: negative_uris[i] for i in spec.negatives},
                max(1, int(asks.num_cpus)),
                shard_id == CRITIC_SHARD,
            )
            for shard_id, spec in enumerate(self.shards)
        ]
        self._owner = {("p", i): s for s, spec in enumerate(self.shards) for i in spec.positives}
        self._owner |= {("n", i): s for s, spec in enumerate(self.shards) for i in spec.negatives}

    def __enter__(self) -> RayModelGradients:
        return self

    def __exit__(self, *_: object) -> None:
        self.shutdown()

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

    def __call__(
        self,
        z: torch.Tensor,
        targets: Targets,
        plan: StepPlan,
        objective: Objective,
        critic_labels: torch.Tensor | None = None,
    ) -> ModelStep:
        started = time.perf_counter()
        latents = z.detach().cpu().numpy()  # (N, z_dim)
        labels = torch.stack([targets.y_gen, targets.y_orig, targets.y_adv]).cpu().numpy()
        critic = critic_labels.cpu().numpy() if critic_labels is not None else None
        calls = []
        for shard_id, actor in enumerate(self.actors):
            call = ShardCall(
                tuple(i for i in plan.positives if self._owner[("p", i)] == shard_id),
                tuple(i for i in plan.negatives if self._owner[("n", i)] == shard_id),
                len(plan.positives),
                len(plan.negatives),
            )
            asks_critic = critic is not None and shard_id == CRITIC_SHARD
            if call.positives or call.negatives or asks_critic:
                ref = actor.step.remote(
                    latents,
                    labels,
                    plan.transform,
                    call,
                    objective,
                    critic if asks_critic else None,
                )
                calls.append((shard_id, call, ref))
        results = self._gather(calls, started)
        step = self._combine(z, plan, calls, results)
        metrics.LATENT_STEPS.inc()
        metrics.LATENT_STEPS_PER_SECOND.set(1.0 / max(time.perf_counter() - started, 1e-9))
        metrics.LATENT_LOSS.labels("positive").set(step.positive)
        metrics.LATENT_LOSS.labels("negative").set(step.negative)
        metrics.LATENT_SUCCESS_RATIO.set(float(step.hits.mean()))
        return step

    def _combine(
        self,
        z: torch.Tensor,
        plan: StepPlan,
        calls: list[tuple[int, ShardCall, Any]],
        results: list[ShardResult],
    ) -> ModelStep:
        """Add the shards' parts: the same gradient and means as the reference's."""
        grad = torch.zeros_like(z)
        positive = negative = discriminator = 0.0
        hits: dict[tuple[str, int], float] = {}
        losses: dict[tuple[str, int], float] = {}
        for (shard_id, call, _), result in zip(calls, results):
            if not result.finite():
                raise FingerprintError(
                    f"shard {shard_id} returned a non-finite loss or gradient for positives "
                    f"{list(call.positives)} and negatives {list(call.negatives)}; check those "
                    "models and lower fingerprint.lr"
                )
            grad += torch.from_numpy(np.array(result.grad)).to(z.device)
            positive += result.positive_sum
            negative += result.negative_sum
            discriminator += result.discriminator  # only the critic shard's is non-zero
            hits |= {("p", i): h for i, h in zip(call.positives, result.positive_hits)}
            hits |= {("n", i): h for i, h in zip(call.negatives, result.negative_hits)}
            losses |= {("p", i): v for i, v in zip(call.positives, result.positive_losses)}
            losses |= {("n", i): v for i, v in zip(call.negatives, result.negative_losses)}
        keys = [("p", i) for i in plan.positives] + [("n", i) for i in plan.negatives]
        return ModelStep(
            grad,
            positive / len(plan.positives),
            negative / len(plan.negatives),
            torch.tensor([hits[key] for key in keys]),
            torch.tensor([losses[key] for key in keys]),
            discriminator,
        )

    def _gather(self, calls: list[tuple[int, ShardCall, Any]], started: float) -> list[Any]:
        """Results in call order, timing each shard as its gradient arrives."""
        pending = {ref: shard_id for shard_id, _, ref in calls}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            shard_id = pending.pop(done[0])
            metrics.LATENT_SHARD_SECONDS.labels(str(shard_id)).observe(
                time.perf_counter() - started
            )
        return ray.get([ref for *_, ref in calls])

    def shutdown(self) -> None:
        """Kill the actors (idempotent), giving their resources back to the cluster."""
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []


def _check_capacity(asks: ShardAsks, num_shards: int) -> None:
    """Actors hold their CPUs for life: asking for more than the cluster has waits forever."""
    if asks.placement_group is None:
        total = ray.cluster_resources()
        for name, each in (("CPU", asks.num_cpus), ("GPU", asks.num_gpus)):
            if each * num_shards > total.get(name, 0.0) + 1e-9:
                raise ConfigError(
                    f"{num_shards} shards x {each:g} {name} exceed the cluster's "
                    f"{total.get(name, 0.0):g} {name}; lower sharding.num_shards or the "
                    "per-shard ask"
                )
    elif asks.first_bundle + num_shards > len(asks.placement_group.bundle_specs):
        raise ConfigError(
            f"{num_shards} shards need bundles {asks.first_bundle}.."
            f"{asks.first_bundle + num_shards - 1} of a placement group with "
            f"{len(asks.placement_group.bundle_specs)}"
        )
