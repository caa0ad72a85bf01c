"""The sharded Ray engine gives the reference's latents (1, 2 and 3 shards) and names a shard
that returns NaN."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import ray
import torch

from nf_dist.cli import main
from nf_dist.distributed.sharded import RayModelGradients, place_models
from nf_dist.errors import ConfigError, FingerprintError
from nf_dist.fingerprint.fingerprint_set import load_fingerprint_set
from nf_dist.fingerprint.naturalfinger import (
    NaturalFingerConfig,
    Objective,
    draw_candidates,
    optimise_latents,
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


def _run(world: dict, engine: RayModelGradients | None) -> tuple[torch.Tensor, list[float]]:
    generator, discriminator, positives, negatives = world["models"]
    z, y_gen, y_orig, y_adv = world["labels"]
    final, history = optimise_latents(
        generator,
        discriminator,
        positives,
        negatives,
        z,
        y_gen,
        y_orig,
        y_adv,
        CONFIG,
        num_classes=10,
        progress=False,
        engine=engine,
    )
    return final, history.loss


def _engine(world: dict, num_shards: int, k: float = CONFIG.k) -> RayModelGradients:
    zoo = world["zoo"]
    engine = RayModelGradients(
        zoo["gan"],
        zoo["positive_uris"],
        zoo["negative_uris"],
        num_shards,
        world["labels"][1:],
        Objective(k),
        num_cpus_per_shard=0.5,  # three shards fit the 2-CPU test cluster
    )
    engine.wait_ready()
    return engine


@pytest.mark.parametrize("num_shards", [1, 2, 3])
def test_sharded_latents_match_the_reference(world: dict, num_shards: int) -> None:
    reference, reference_loss = _run(world, None)
    engine = _engine(world, num_shards)
    try:
        sharded, sharded_loss = _run(world, engine)
    finally:
        engine.shutdown()
    assert len(engine.shards) == num_shards
    relative = (sharded - reference).norm() / reference.norm()
    assert relative.item() < 1e-4
    assert sharded_loss == pytest.approx(reference_loss, rel=1e-4, abs=1e-6)
    z0 = world["labels"][0]
    assert (reference - z0).abs().max() > 1e-3  # the run moved the latents


def test_one_step_matches_the_reference_model_by_model(world: dict) -> None:
    from nf_dist.fingerprint.naturalfinger import LocalModelGradients, plan_steps

    generator, _, positives, negatives = world["models"]
    z, y_gen, y_orig, y_adv = world["labels"]
    plan = plan_steps(2, 2, CONFIG)[0]
    local = LocalModelGradients(
        generator, positives, negatives, y_gen, y_orig, y_adv, Objective.of(CONFIG)
    )
    expected = local(z, plan)
    engine = _engine(world, 2)
    try:
        got = engine(z, plan)
    finally:
        engine.shutdown()
    assert torch.allclose(got.grad, expected.grad, rtol=1e-4, atol=1e-7)
    assert torch.allclose(got.losses, expected.losses, rtol=1e-5)
    assert torch.equal(got.hits, expected.hits)
    assert got.positive == pytest.approx(expected.positive, rel=1e-5)


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
        RayModelGradients(
            zoo["gan"],
            zoo["positive_uris"],
            zoo["negative_uris"],
            3,
            world["labels"][1:],
            Objective(),
        )


def test_a_nan_gradient_names_the_shard_and_models(world: dict) -> None:
    engine = _engine(world, 2, k=float("nan"))  # k = NaN poisons every CW loss
    try:
        with pytest.raises(FingerprintError, match=r"shard \d returned a non-finite"):
            _run(world, engine)
    finally:
        engine.shutdown()


def test_fingerprint_command_gives_the_same_set_on_both_engines(
    world: dict, tmp_path: Path
) -> None:
    zoo = world["zoo"]
    common = [
        "--set",
        f"gan_uri={zoo['gan']}",
        "--set",
        f"positives=[{', '.join(zoo['positive_uris'])}]",
        "--set",
        f"negatives=[{', '.join(zoo['negative_uris'])}]",
        "--set",
        "fingerprint.num_candidates=128",
        "--set",
        "fingerprint.num_optimised=64",
        "--set",
        "fingerprint.steps=60",
        "--set",
        "fingerprint.batch_size=64",
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
                "cpus_per_shard=0.5",
            ]
        )
        == 0
    )
    a, b = load_fingerprint_set(str(local)), load_fingerprint_set(str(sharded))
    assert len(a) == len(b) > 0
    assert np.array_equal(a.y_orig, b.y_orig) and np.array_equal(a.y_adv, b.y_adv)
    assert np.abs(a.latents - b.latents).max() < 1e-3


class _KillAfter:
    """Wraps the Ray engine; SIGKILLs one shard actor's process after a few steps."""

    def __init__(self, engine: RayModelGradients, step: int) -> None:
        self.engine, self.step, self.calls, self.killed = engine, step, 0, 0

    def __call__(self, z, plan):
        self.calls += 1
        if self.calls == self.step:
            (_, pid) = ray.get(self.engine.actors[0].ready.remote())
            os.kill(pid, signal.SIGKILL)
            self.killed = pid
        return self.engine(z, plan)


def test_a_killed_actor_restarts_and_the_run_matches(world: dict) -> None:
    reference, _ = _run(world, None)
    engine = _engine(world, 2)
    killer = _KillAfter(engine, 3)
    try:
        sharded, _ = _run(world, killer)  # type: ignore[arg-type]
        (_, new_pid) = ray.get(engine.actors[0].ready.remote())
    finally:
        engine.shutdown()
    assert killer.killed and new_pid != killer.killed
    assert ((sharded - reference).norm() / reference.norm()).item() < 1e-4


def test_the_engine_reports_prometheus_metrics(world: dict) -> None:
    from prometheus_client import REGISTRY

    before = REGISTRY.get_sample_value("nf_latent_steps_total") or 0.0
    engine = _engine(world, 2)
    try:
        _run(world, engine)
    finally:
        engine.shutdown()
    assert REGISTRY.get_sample_value("nf_latent_steps_total") == before + CONFIG.steps
    latency = REGISTRY.get_sample_value("nf_latent_shard_gradient_seconds_count", {"shard": "0"})
    assert latency is not None and latency > 0
    assert REGISTRY.get_sample_value("nf_latent_steps_per_second") > 0
    success = REGISTRY.get_sample_value("nf_latent_success_ratio")
    assert success is not None and 0 <= success <= 1
