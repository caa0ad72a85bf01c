"""The sharded Ray engine gives the reference's latents (1, 2 and 3 shards) and names a shard
that returns NaN."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray
import torch

from nf_dist.cli import main
from nf_dist.distributed.placement import place_models
from nf_dist.distributed.sharded import RayModelGradients, ShardAsks
from nf_dist.errors import ConfigError, FingerprintError
from nf_dist.fingerprint.fingerprint_set import load_fingerprint_set
from nf_dist.fingerprint.naturalfinger import (
    LocalModelGradients,
    NaturalFingerConfig,
    Objective,
    Prepared,
    Targets,
    draw_candidates,
    optimise,
    plan_steps,
    random_labels,
    select_initial,
)
from nf_dist.models.checkpoint import load_classifier
from nf_dist.models.gan.train import load_gan

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_cluster")]

CONFIG = NaturalFingerConfig(
    num_candidates=64,
    num_optimised=16,
    steps=5,
    batch_size=32,
    positives_per_step=2,
    negatives_per_step=1,
)


@pytest.fixture(scope="module")
def world(tiny_zoo: dict) -> dict:
    generator, discriminator, _ = load_gan(tiny_zoo["gan"])
    positives = [load_classifier(u)[0] for u in tiny_zoo["positive_uris"]]
    negatives = [load_classifier(u)[0] for u in tiny_zoo["negative_uris"]]
    for module in [generator, discriminator, *positives, *negatives]:
        module.requires_grad_(False)
    z, y_gen, y_orig = select_initial(
        generator, positives, *draw_candidates(16, 10, CONFIG), CONFIG
    )
    y_adv = random_labels(y_orig, 10, seed=0)
    return dict(
        zoo=tiny_zoo,
        models=(generator, discriminator, positives, negatives),
        labels=(z, y_gen, y_orig, y_adv),
    )


def _targets(world: dict) -> Targets:
    _, y_gen, y_orig, y_adv = world["labels"]
    return Targets(y_gen, y_orig, y_adv)


def _run(
    world: dict, engine: Any | None, config: NaturalFingerConfig = CONFIG
) -> tuple[torch.Tensor, list[float]]:
    generator, discriminator, positives, negatives = world["models"]
    engine = engine or LocalModelGradients(generator, positives, negatives, discriminator)
    prepared = Prepared(world["labels"][0], _targets(world))
    final, history = optimise(engine, prepared, config, 10, progress=False)
    return final, history.loss


def _engine(world: dict, num_shards: int) -> RayModelGradients:
    zoo = world["zoo"]
    engine = RayModelGradients(
        zoo["gan"],
        zoo["positive_uris"],
        zoo["negative_uris"],
        num_shards,
        ShardAsks(num_cpus=0.5),  # three shards fit the 2-CPU test cluster
    )
    engine.wait_ready()
    return engine


def _held_cpus(expected: float, timeout_s: float = 20.0) -> float:
    """CPUs of this test's own Ray cluster held by actors and tasks, waiting up to
    ``timeout_s`` for it to reach ``expected`` (a killed actor frees its CPUs asynchronously)."""
    deadline = time.monotonic() + timeout_s
    while True:
        held = ray.cluster_resources()["CPU"] - ray.available_resources().get("CPU", 0.0)
        if abs(held - expected) < 1e-6 or time.monotonic() > deadline:
            return held
        time.sleep(0.2)


@pytest.mark.parametrize("num_shards", [1, 2, 3])
def test_sharded_latents_match_the_reference(world: dict, num_shards: int) -> None:
    reference, reference_loss = _run(world, None)
    with _engine(world, num_shards) as engine:
        sharded, sharded_loss = _run(world, engine)
        assert _held_cpus(0.5 * num_shards) == pytest.approx(0.5 * num_shards)
    assert _held_cpus(0.0) == 0.0, "leaving the engine's block releases its actors' CPUs"
    assert len(engine.shards) == num_shards
    relative = (sharded - reference).norm() / reference.norm()
    assert relative.item() < 1e-4
    assert sharded_loss == pytest.approx(reference_loss, rel=1e-4, abs=1e-6)
    z0 = world["labels"][0]
    assert (reference - z0).abs().max() > 1e-3  # the run moved the latents


def test_model_dropout_runs_the_same_on_two_shards(world: dict) -> None:
    """Dropout plans keep any subset of models per step: the shards compute their part of it."""
    config = replace(CONFIG, model_sampling="dropout", model_dropout=0.5)
    reference, reference_loss = _run(world, None, config)
    with _engine(world, 2) as engine:
        sharded, sharded_loss = _run(world, engine, config)
    assert ((sharded - reference).norm() / reference.norm()).item() < 1e-4
    assert sharded_loss == pytest.approx(reference_loss, rel=1e-4, abs=1e-6)
    assert not torch.equal(reference, _run(world, None)[0]), "dropout changed the schedule"


@pytest.mark.parametrize(
    ("with_critic", "precision"), [(False, "fp32"), (True, "fp32"), (False, "bf16")]
)
def test_one_step_matches_the_reference_model_by_model(
    world: dict, with_critic: bool, precision: str
) -> None:
    """One negative per step over two shards: one shard computes no negative, which under bf16
    once returned a bf16 empty tensor that numpy cannot take."""
    generator, discriminator, positives, negatives = world["models"]
    z = world["labels"][0]
    config = replace(CONFIG, precision=precision)
    plan = plan_steps(2, 2, config)[0]
    assert len(plan.negatives) == 1
    objective = Objective.of(config)
    assert objective.lambda_d > 0
    critic_labels = _targets(world).y_gen if with_critic else None
    expected = LocalModelGradients(generator, positives, negatives, discriminator)(
        z, _targets(world), plan, objective, critic_labels
    )
    with _engine(world, 2) as engine:
        got = engine(z, _targets(world), plan, objective, critic_labels)
    if precision == "fp32":
        assert torch.allclose(got.grad, expected.grad, rtol=1e-4, atol=1e-7)
    else:  # the shards add the groups' bf16 terms in another order: bf16's 8-bit mantissa
        relative = (got.grad - expected.grad).norm() / expected.grad.norm()
        assert relative.item() < 2e-2
    assert torch.allclose(got.losses, expected.losses, rtol=1e-5)
    assert torch.equal(got.hits, expected.hits)
    assert got.positive == pytest.approx(expected.positive, rel=1e-5)
    assert got.discriminator == pytest.approx(expected.discriminator, rel=1e-5)
    assert (got.discriminator != 0.0) == with_critic


def test_placement_balances_and_covers_every_model() -> None:
    shards = place_models(4, 4, 3, costs=[4, 1, 1, 1, 4, 1, 1, 1])
    assert sorted(i for s in shards for i in s.positives) == [0, 1, 2, 3]
    assert sorted(i for s in shards for i in s.negatives) == [0, 1, 2, 3]
    loads = [
        sum([4, 1, 1, 1][i] for i in s.positives) + sum([4, 1, 1, 1][i] for i in s.negatives)
        for s in shards
    ]
    assert max(loads) - min(loads) <= 2
    assert len(place_models(2, 1, 8)) == 3  # never more shards than models


def test_asking_for_more_cpus_than_the_cluster_has_is_an_error(world: dict) -> None:
    zoo = world["zoo"]
    with pytest.raises(ConfigError, match="exceed the cluster"):
        RayModelGradients(zoo["gan"], zoo["positive_uris"], zoo["negative_uris"], 3)


def test_a_nan_gradient_names_the_shard_and_models(world: dict) -> None:
    generator, _, _, _ = world["models"]
    plan = plan_steps(2, 2, CONFIG)[0]
    poisoned = Objective(k=float("nan"))  # k = NaN poisons every CW loss
    with (
        _engine(world, 2) as engine,
        pytest.raises(FingerprintError, match=r"shard \d returned a non-finite"),
    ):
        engine(world["labels"][0], _targets(world), plan, poisoned)


def test_an_error_inside_the_block_still_releases_the_actors(world: dict) -> None:
    with pytest.raises(RuntimeError, match="mid-run"), _engine(world, 2):
        assert _held_cpus(1.0) == pytest.approx(1.0)
        raise RuntimeError("mid-run")
    assert _held_cpus(0.0) == 0.0


def test_fingerprint_command_gives_the_same_set_on_both_engines(
    world: dict, tmp_path: Path
) -> None:
    zoo = world["zoo"]
    common = [
        "--set",
        f"gan_uri={zoo['gan']}",
        "--set",
        f"models.positives=[{', '.join(zoo['positive_uris'])}]",
        "--set",
        f"models.negatives=[{', '.join(zoo['negative_uris'])}]",
        "--set",
        "fingerprint.num_candidates=128",
        "--set",
        "fingerprint.num_optimised=64",
        "--set",
        "fingerprint.steps=60",
        "--set",
        "fingerprint.batch_size=64",
        "--set",
        "fingerprint.screen_transforms=[identity]",  # keeps images on any CPU's kernels
        "--no-progress",
    ]
    local, sharded = tmp_path / "local.parquet", tmp_path / "ray.parquet"
    assert main(["fingerprint", *common, "--set", f"output_uri={local}"]) == 0
    assert (
        main(
            [
                "fingerprint",
                *common,
                "--set",
                f"output_uri={sharded}",
                "--engine",
                "ray",
                "--num-shards",
                "2",
                "--set",
                "sharding.cpus_per_shard=0.5",
            ]
        )
        == 0
    )
    a, b = load_fingerprint_set(str(local)), load_fingerprint_set(str(sharded))
    assert len(a) == len(b) > 0
    assert np.array_equal(a.y_orig, b.y_orig) and np.array_equal(a.y_adv, b.y_adv)
    # The shards add the models' losses in another order; the float difference grows over 60
    # steps by an amount the CPU's kernels decide (0.009 of latents of norm about 4 on an AVX2
    # EPYC): the sets must agree on every label, the latents to within 1%.
    assert np.abs(a.latents - b.latents).max() < 4e-2
    assert _held_cpus(0.0) == 0.0, "the fingerprint job closes its engine"


class _KillAfter:
    """Wraps the Ray engine; SIGKILLs one shard actor's process after a few steps."""

    def __init__(self, engine: RayModelGradients, step: int) -> None:
        self.engine, self.step, self.calls, self.killed = engine, step, 0, 0

    @property
    def num_positive(self) -> int:
        return self.engine.num_positive

    @property
    def num_negative(self) -> int:
        return self.engine.num_negative

    def __call__(self, *args):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls == self.step:
            (_, pid) = ray.get(self.engine.actors[0].ready.remote())
            os.kill(pid, signal.SIGKILL)  # this test's own actor, found through its own handle
            self.killed = pid
        return self.engine(*args)


def test_a_killed_actor_restarts_and_the_run_matches(world: dict) -> None:
    reference, _ = _run(world, None)
    with _engine(world, 2) as engine:
        killer = _KillAfter(engine, 3)
        sharded, _ = _run(world, killer)
        (_, new_pid) = ray.get(engine.actors[0].ready.remote())
    assert killer.killed and new_pid != killer.killed
    assert ((sharded - reference).norm() / reference.norm()).item() < 1e-4


def test_the_engine_reports_prometheus_metrics(world: dict) -> None:
    from prometheus_client import REGISTRY

    before = REGISTRY.get_sample_value("nf_latent_steps_total") or 0.0
    with _engine(world, 2) as engine:
        _run(world, engine)
    assert REGISTRY.get_sample_value("nf_latent_steps_total") == before + CONFIG.steps
    latency = REGISTRY.get_sample_value("nf_latent_shard_gradient_seconds_count", {"shard": "0"})
    assert latency is not None and latency > 0
    assert REGISTRY.get_sample_value("nf_latent_steps_per_second") > 0
    success = REGISTRY.get_sample_value("nf_latent_success_ratio")
    assert success is not None and 0 <= success <= 1
