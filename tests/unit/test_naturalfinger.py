"""NaturalFinger reference on tiny models: schedule invariants, labels, golden numbers."""

import contextlib
import copy
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from nf_dist.errors import ConfigError, FingerprintError
from nf_dist.fingerprint.fingerprint_set import load_fingerprint_set, save_fingerprint_set
from nf_dist.fingerprint.methods import METHODS, FingerprintContext
from nf_dist.fingerprint.methods.base import RunOptions
from nf_dist.fingerprint.naturalfinger import (
    Checkpointing,
    LocalModelGradients,
    NaturalFingerConfig,
    Prepared,
    Targets,
    draw_candidates,
    fgsm_labels,
    modules_digest,
    optimise,
    plan_steps,
    random_labels,
    screen,
    select_initial,
)
from nf_dist.fingerprint.naturalfinger.progress import copy_progress
from nf_dist.models import create_classifier
from nf_dist.models.gan import GanSpec, build_gan

Z_DIM = 16


@pytest.fixture
def tiny_world() -> tuple:
    """A tiny GAN, 3 positives (a source and perturbed copies) and 2 independent negatives."""
    torch.manual_seed(0)
    generator, discriminator = build_gan(GanSpec(Z_DIM, 10, 8, 8, False))
    source = create_classifier("vgg13_bn", width=0.125, stem_stride=2)
    positives = [source]
    for i in range(2):
        copy = create_classifier("vgg13_bn", width=0.125, stem_stride=2)
        copy.load_state_dict(source.state_dict())
        with torch.no_grad():
            for p in copy.parameters():
                p.add_(0.01 * (i + 1) * torch.randn_like(p))
        positives.append(copy)
    negatives = [create_classifier("resnet18", width=0.0625, stem_stride=2) for _ in range(2)]
    for model in [generator, discriminator, *positives, *negatives]:
        model.eval()
    return generator, discriminator, positives, negatives


def _optimise(world: tuple, z, y_gen, y_orig, y_adv, config, **options):  # type: ignore[no-untyped-def]
    """The optimisation stage on the tiny world's models (the reference engine by default)."""
    generator, discriminator, positives, negatives = world
    for p in [*positives, *negatives, generator, discriminator]:
        p.requires_grad_(False)
    engine = options.pop("engine", None) or LocalModelGradients(
        generator, positives, negatives, discriminator
    )
    prepared = Prepared(z, Targets(y_gen, y_orig, y_adv))
    return optimise(engine, prepared, config, 10, progress=False, **options)


def test_plan_steps_covers_models_each_epoch() -> None:
    config = NaturalFingerConfig(steps=9, positives_per_step=2, negatives_per_step=3)
    plans = plan_steps(5, 6, config)
    assert len(plans) == 9
    # 3 positive chunks and 2 negative chunks: an epoch has 3 steps; each epoch sees every model.
    for epoch in range(3):
        chunk = plans[epoch * 3 : epoch * 3 + 3]
        assert sorted(i for p in chunk for i in p.positives) == [0, 1, 2, 3, 4]
        assert set(i for p in chunk for i in p.negatives) == set(range(6))
    assert plans == plan_steps(5, 6, config), "the schedule is a function of the seed"
    identity_only = plan_steps(5, 6, NaturalFingerConfig(steps=9, input_transforms=False))
    assert {p.transform.name for p in identity_only} == {"identity"}


def test_dropout_sampling_keeps_each_model_at_the_asked_rate() -> None:
    config = NaturalFingerConfig(steps=2000, model_sampling="dropout", model_dropout=0.3)
    plans = plan_steps(16, 12, config)
    assert len(plans) == 2000 and all(p.positives and p.negatives for p in plans)
    kept = np.zeros(16)
    for plan in plans:
        assert len(set(plan.positives)) == len(plan.positives)
        kept[list(plan.positives)] += 1
    # each model sits out ~30% of the steps (binomial sd over 2000 steps ~ 1%)
    assert np.abs(kept / 2000 - 0.7).max() < 0.04
    assert np.mean([len(p.negatives) for p in plans]) == pytest.approx(0.7 * 12, abs=0.2)
    assert plans == plan_steps(16, 12, config), "the schedule is a function of the seed"
    everyone = plan_steps(3, 2, replace(config, steps=5, model_dropout=0.0))
    assert {(p.positives, p.negatives) for p in everyone} == {((0, 1, 2), (0, 1))}
    lonely = plan_steps(1, 1, replace(config, steps=50, model_dropout=0.9))
    assert {(p.positives, p.negatives) for p in lonely} == {((0,), (0,))}


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="num_optimised"):
        NaturalFingerConfig(num_candidates=10, num_optimised=20)
    with pytest.raises(ConfigError, match="discriminator_loss"):
        NaturalFingerConfig(discriminator_loss="sigmoid")


def test_initial_selection_and_labels(tiny_world: tuple) -> None:
    generator, _, positives, negatives = tiny_world
    config = NaturalFingerConfig(num_candidates=64, num_optimised=16, batch_size=32)
    z, y_gen, y_orig = select_initial(
        generator, positives, *draw_candidates(Z_DIM, 10, config), config
    )
    assert 0 < len(z) <= 16
    images = generator(z, y_gen)
    for model in positives:
        assert torch.equal(model(images).argmax(1), y_orig)
    y_adv = fgsm_labels(generator, negatives, z, y_gen, y_orig, config, 10)
    assert y_adv.shape == y_orig.shape and y_adv.min() >= 0 and y_adv.max() < 10
    random = random_labels(y_orig, 10, seed=0)
    assert (random != y_orig).all()


def test_off_class_selection_keeps_labels_other_than_the_generator_class(
    tiny_world: tuple,
) -> None:
    generator, _, positives, _ = tiny_world
    every = NaturalFingerConfig(num_candidates=64, num_optimised=64, batch_size=32)
    off = NaturalFingerConfig(
        num_candidates=64, num_optimised=64, batch_size=32, initial_labels="off_class"
    )
    candidates = draw_candidates(Z_DIM, 10, every)
    _, all_gen, all_orig = select_initial(generator, positives, *candidates, every)
    assert (all_gen == all_orig).any() and (all_gen != all_orig).any(), "the world must mix both"
    z, y_gen, y_orig = select_initial(generator, positives, *candidates, off)
    assert (y_gen != y_orig).all()
    assert len(z) == int((all_gen != all_orig).sum()), "every off-class candidate, no other"
    with pytest.raises(ConfigError, match="fingerprint.initial_labels"):
        NaturalFingerConfig(initial_labels="natural")  # type: ignore[arg-type]


class _HashLabels(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        label = (x.mean((1, 2, 3)) * 1e4).long() % 10
        return torch.nn.functional.one_hot(label, 10).float()


def test_unique_selection_starts_where_fewest_negatives_share_the_label(
    tiny_world: tuple,
) -> None:
    generator, _, positives, _ = tiny_world
    # Negatives that share some of the source's labels: the source itself, and one whose
    # label is a hash of the image, so the number agreeing with y_orig varies by candidate.
    negatives = [positives[0], _HashLabels()]
    base = NaturalFingerConfig(num_candidates=64, num_optimised=8, batch_size=32)
    unique = NaturalFingerConfig(
        num_candidates=64, num_optimised=8, batch_size=32, initial_selection="unique"
    )
    candidates = draw_candidates(Z_DIM, 10, base)
    agreeing = select_initial(
        generator, positives, *candidates, NaturalFingerConfig(num_candidates=64, num_optimised=64)
    )

    def shared(z: torch.Tensor, y_gen: torch.Tensor, y_orig: torch.Tensor) -> torch.Tensor:
        images = generator(z, y_gen)
        return sum((m(images).argmax(1) == y_orig).long() for m in negatives)  # type: ignore[return-value]

    every = shared(*agreeing)
    assert every.min() < every.max(), "the tiny world must give the ranking something to rank"
    z, y_gen, y_orig = select_initial(generator, positives, *candidates, unique, negatives)
    picked = shared(z, y_gen, y_orig)
    assert len(z) == 8
    assert torch.equal(picked, torch.sort(every).values[:8]), "the 8 least shared, in rank order"


def test_initial_agreement_keeps_candidates_most_positives_label_as_the_source_does(
    tiny_world: tuple,
) -> None:
    """With a dissenting member in the positives (a model whose label is a hash of the image),
    ``initial_agreement: 1.0`` keeps only what all agree on; a lower share keeps a superset,
    each candidate with at least that share answering the first positive's label, most-agreed
    first."""
    generator, _, positives, _ = tiny_world
    members = [*positives, _HashLabels()]
    candidates = draw_candidates(Z_DIM, 10, NaturalFingerConfig(num_candidates=64, num_optimised=8))

    def select(share: float) -> tuple[torch.Tensor, ...]:
        config = NaturalFingerConfig(
            num_candidates=64, num_optimised=64, batch_size=32, initial_agreement=share
        )
        return select_initial(generator, members, *candidates, config)

    def shares(z: torch.Tensor, y_gen: torch.Tensor, y_orig: torch.Tensor) -> torch.Tensor:
        images = generator(z, y_gen)
        return sum((m(images).argmax(1) == y_orig).float() for m in members) / len(members)

    every = select(1.0)
    most = select((len(members) - 1) / len(members))
    assert len(most[0]) > len(every[0]), "the hash model must dissent somewhere"
    kept = shares(*most)
    assert kept.min() >= (len(members) - 1) / len(members) - 1e-6
    assert torch.equal(kept, torch.sort(kept, descending=True).values), "most-agreed first"
    assert torch.equal(most[2], members[0](generator(most[0], most[1])).argmax(1))
    everywhere = {tuple(v.tolist()) for v in every[0]}
    assert everywhere <= {tuple(v.tolist()) for v in most[0]}
    with pytest.raises(ConfigError, match="fingerprint.initial_agreement"):
        NaturalFingerConfig(initial_agreement=0.0)


def test_golden_optimisation(tiny_world: tuple) -> None:
    generator, discriminator, positives, negatives = tiny_world
    config = NaturalFingerConfig(
        num_candidates=64,
        num_optimised=16,
        steps=6,
        batch_size=32,
        positives_per_step=2,
        negatives_per_step=1,
    )
    z, y_gen, y_orig = select_initial(
        generator, positives, *draw_candidates(Z_DIM, 10, config), config
    )
    y_adv = random_labels(y_orig, 10, seed=0)
    final, history = _optimise(tiny_world, z, y_gen, y_orig, y_adv, config)
    assert len(history.loss) == 6
    assert history.loss[4] < history.loss[2] < history.loss[0], "the loss must fall"
    assert not torch.equal(final, z)
    assert history.loss == pytest.approx(GOLDEN_LOSSES, rel=1e-4, abs=1e-5)


#: The screen of the small end-to-end runs: on the tiny zoo the five-view screen keeps 0-3 of 64
#: images, and which ones depends on the CPU's float kernels (none on an AVX2 EPYC); the plain
#: view keeps about 23, a margin every CPU clears.
PLAIN_VIEW = ("identity",)
#: The small end-to-end runs' settings (seconds on 2 cores).
SMALL_RUN: dict = dict(
    num_candidates=128,
    num_optimised=64,
    steps=80,
    batch_size=64,
    lr=0.5,
    screen_transforms=PLAIN_VIEW,
)


def test_generate_end_to_end_and_parquet_round_trip(tiny_zoo: dict, tmp_path: Path) -> None:
    positives, negatives = tiny_zoo["positives"], tiny_zoo["negatives"]
    config = NaturalFingerConfig(num_fingerprints=8, **SMALL_RUN)
    snapshots: dict[int, object] = {}

    def observe(step: int, snapshot) -> None:  # type: ignore[no-untyped-def]
        if step in (39, 79):
            snapshots[step] = snapshot()

    context = FingerprintContext(
        positives,
        negatives,
        generator=tiny_zoo["generator"],
        discriminator=tiny_zoo["discriminator"],
        z_dim=Z_DIM,
    )
    result = METHODS.get("naturalfinger")().generate(context, config, RunOptions(on_step=observe))
    assert 0 < len(result) <= 8
    # The last step's snapshot is exactly the returned set; an earlier one is a valid set too.
    last = snapshots[79]
    assert np.array_equal(last.images, result.images)  # type: ignore[attr-defined]
    assert np.array_equal(last.y_orig, result.y_orig)  # type: ignore[attr-defined]
    assert len(snapshots[39]) <= 8  # type: ignore[arg-type]
    assert (result.y_orig != result.y_adv).all()
    # Every kept image, as stored (8-bit), is labelled y_orig by every positive model.
    inputs = torch.from_numpy(result.images).permute(0, 3, 1, 2).float() / 255
    for model in positives:
        assert torch.equal(model(inputs).argmax(1), torch.from_numpy(result.y_orig))
    for model in negatives:
        assert torch.equal(model(inputs).argmax(1), torch.from_numpy(result.y_adv))
    uri = str(tmp_path / "fp.parquet")
    save_fingerprint_set(result, uri)
    loaded = load_fingerprint_set(uri)
    assert np.array_equal(loaded.images, result.images)
    assert np.array_equal(loaded.y_orig, result.y_orig)
    assert loaded.latents is not None and loaded.latents.shape == (len(result), Z_DIM)
    assert loaded.config["steps"] == 80 and loaded.method == "naturalfinger"


def test_screening_models_screen_but_are_never_optimised_for(tiny_zoo: dict) -> None:
    positives, negatives = tiny_zoo["positives"], tiny_zoo["negatives"]
    config = NaturalFingerConfig(num_fingerprints=64, **SMALL_RUN)

    def generate(screening: list, screening_positives: tuple = ()) -> object:  # type: ignore[type-arg]
        context = FingerprintContext(
            positives,
            negatives,
            screening_positives=screening_positives,
            screening_negatives=screening,
            generator=tiny_zoo["generator"],
            discriminator=tiny_zoo["discriminator"],
            z_dim=Z_DIM,
        )
        return METHODS.get("naturalfinger")().generate(context, config)

    plain = generate([])
    # A copy of an optimisation negative changes neither the descent nor what it keeps.
    same = generate([copy.deepcopy(negatives[0])])
    assert same.info["final_loss"] == plain.info["final_loss"]  # type: ignore[attr-defined]
    assert np.array_equal(same.images, plain.images)  # type: ignore[attr-defined]
    # A "negative" that answers like the owner's models rejects every image, and so does a
    # "positive" that answers like the independent ones: both do screen.
    with pytest.raises(FingerprintError, match="passed screening"):
        generate([copy.deepcopy(positives[-1])])
    with pytest.raises(FingerprintError, match="passed screening"):
        generate([], (copy.deepcopy(negatives[0]),))


# Measured once with torch 2.14.1 on the CPU (seed 0); a change here is a change of behaviour.
GOLDEN_LOSSES = [0.302584, 0.400433, 0.299077, 0.396662, 0.293136, 0.391797]


class _FailAt(LocalModelGradients):
    """A reference engine that dies at one step, as a crashed driver would."""

    def __init__(self, world: tuple, step: int) -> None:
        generator, discriminator, positives, negatives = world
        super().__init__(generator, positives, negatives, discriminator)
        self.step, self.calls = step, 0

    def __call__(self, *args):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls > self.step:
            raise RuntimeError("killed")
        return super().__call__(*args)


def test_a_killed_optimisation_resumes_to_the_same_latents(
    tiny_world: tuple, tmp_path: Path
) -> None:
    generator, _, positives, _ = tiny_world
    config = NaturalFingerConfig(
        num_candidates=64, num_optimised=16, steps=9, batch_size=32, positives_per_step=1
    )
    z, y_gen, y_orig = select_initial(
        generator, positives, *draw_candidates(Z_DIM, 10, config), config
    )
    y_adv = random_labels(y_orig, 10, seed=0)
    args = (tiny_world, z, y_gen, y_orig, y_adv, config)
    whole, whole_history = _optimise(*args)
    saving = Checkpointing(str(tmp_path / "progress"), every=2)
    with pytest.raises(RuntimeError, match="killed"):
        _optimise(*args, engine=_FailAt(tiny_world, 5), checkpointing=saving)
    resumed_engine = _FailAt(tiny_world, 100)
    resumed, history = _optimise(*args, engine=resumed_engine, checkpointing=saving)
    assert resumed_engine.calls == 9 - 4  # resumed after the checkpoint at step 4
    assert torch.allclose(resumed, whole, rtol=1e-5, atol=1e-6)
    assert history.loss == pytest.approx(whole_history.loss, rel=1e-5)


def _four_step_descent(tiny_world: tuple) -> tuple[NaturalFingerConfig, tuple]:
    """A 4-step config and its selected latents and targets (z, y_gen, y_orig, y_adv)."""
    generator, _, positives, _ = tiny_world
    config = NaturalFingerConfig(num_candidates=64, num_optimised=16, steps=4, batch_size=32)
    z, y_gen, y_orig = select_initial(
        generator, positives, *draw_candidates(Z_DIM, 10, config), config
    )
    return config, (z, y_gen, y_orig, random_labels(y_orig, 10, seed=0))


def test_a_finished_optimisation_is_rescreened_without_descending_again(
    tiny_world: tuple, tmp_path: Path
) -> None:
    config, (z, y_gen, y_orig, y_adv) = _four_step_descent(tiny_world)
    saving = Checkpointing(str(tmp_path / "progress"), every=2)
    first, _ = _optimise(tiny_world, z, y_gen, y_orig, y_adv, config, checkpointing=saving)
    rescreened = replace(config, screen_draws=3, screen_min_pass=0.8, num_fingerprints=5)
    engine = _FailAt(tiny_world, 100)
    again, _ = _optimise(
        tiny_world, z, y_gen, y_orig, y_adv, rescreened, engine=engine, checkpointing=saving
    )
    assert engine.calls == 0 and torch.equal(again, first)
    engine = _FailAt(tiny_world, 100)
    _optimise(
        tiny_world,
        z,
        y_gen,
        y_orig,
        y_adv,
        replace(config, lr=0.25),
        engine=engine,
        checkpointing=saving,
    )
    assert engine.calls == 4, "another step size is another run"


def test_a_rescreen_starts_from_its_parents_descent_not_its_own_stale_one(
    tiny_world: tuple, tmp_path: Path
) -> None:
    config, (z, y_gen, y_orig, y_adv) = _four_step_descent(tiny_world)
    parent = Checkpointing(str(tmp_path / "parent"), every=2)
    first, _ = _optimise(tiny_world, z, y_gen, y_orig, y_adv, config, checkpointing=parent)
    child = Checkpointing(str(tmp_path / "child"), every=2)
    stale = replace(config, lr=0.25)  # the child's progress from an earlier, other descent
    _optimise(tiny_world, z, y_gen, y_orig, y_adv, stale, checkpointing=child)
    copy_progress(parent.uri, child.uri)
    engine = _FailAt(tiny_world, 100)
    rescreened = replace(config, screen_draws=3, screen_min_pass=0.8, num_fingerprints=5)
    again, _ = _optimise(
        tiny_world, z, y_gen, y_orig, y_adv, rescreened, engine=engine, checkpointing=child
    )
    assert engine.calls == 0 and torch.equal(again, first)


def _optimise_first(world: tuple, n: int, config: NaturalFingerConfig) -> torch.Tensor:
    """Optimise the first ``n`` of 16 fixed latents (random targets) and return them."""
    gen = torch.Generator().manual_seed(5)
    z = torch.randn(16, Z_DIM, generator=gen)
    y_gen, y_orig = (torch.randint(0, 10, (16,), generator=gen) for _ in range(2))
    y_adv = random_labels(y_orig, 10, seed=0)
    final, _ = _optimise(world, z[:n], y_gen[:n], y_orig[:n], y_adv[:n], config)
    return final


def test_sum_reduction_makes_the_per_latent_step_independent_of_n(tiny_world: tuple) -> None:
    base = dict(steps=5, positives_per_step=2, negatives_per_step=1, lr=0.02)
    summed = NaturalFingerConfig(reduction="sum", **base)
    small, large = _optimise_first(tiny_world, 8, summed), _optimise_first(tiny_world, 16, summed)
    assert torch.allclose(small, large[:8], rtol=1e-4, atol=1e-5)
    # The paper's mean: doubling N halves every latent's step, so 2x lr on 2N is the same run.
    mean = NaturalFingerConfig(reduction="mean", **{**base, "lr": 0.5})
    doubled = NaturalFingerConfig(reduction="mean", **{**base, "lr": 1.0})
    assert torch.allclose(
        _optimise_first(tiny_world, 8, mean),
        _optimise_first(tiny_world, 16, doubled)[:8],
        rtol=1e-4,
        atol=1e-5,
    )
    assert not torch.allclose(small, _optimise_first(tiny_world, 8, mean), atol=1e-5)


def test_latent_norm_bound_keeps_latents_on_the_prior_shell(tiny_world: tuple) -> None:
    config = NaturalFingerConfig(
        steps=4,
        positives_per_step=2,
        negatives_per_step=1,
        reduction="sum",
        lr=5.0,
        latent_max_norm=1.0,
    )
    final = _optimise_first(tiny_world, 8, config)
    assert (final.norm(dim=1) <= Z_DIM**0.5 + 1e-4).all()
    unbounded = _optimise_first(
        tiny_world,
        8,
        NaturalFingerConfig(
            **{
                **{
                    f: getattr(config, f)
                    for f in (
                        "steps",
                        "positives_per_step",
                        "negatives_per_step",
                        "reduction",
                        "lr",
                    )
                }
            }
        ),
    )
    assert (unbounded.norm(dim=1) > Z_DIM**0.5).any(), "the bound must have had work to do"


def test_balanced_candidates_spread_the_initial_samples_over_classes(tiny_world: tuple) -> None:
    generator, _, positives, _ = tiny_world
    config = NaturalFingerConfig(
        num_candidates=200, num_optimised=20, batch_size=100, candidate_classes="balanced"
    )
    z, y_gen = draw_candidates(Z_DIM, 10, config)
    assert torch.bincount(y_gen, minlength=10).tolist() == [20] * 10
    _, _, y_orig = select_initial(generator, positives, z, y_gen, config)
    random = NaturalFingerConfig(num_candidates=200, num_optimised=20, batch_size=100)
    _, _, y_random = select_initial(
        generator, positives, *draw_candidates(Z_DIM, 10, random), random
    )
    counts = torch.bincount(y_orig, minlength=10)
    # Round-robin over the labels the positives give: no label can lead by more than one
    # unless the others ran out.
    available = counts[counts > 0]
    assert available.max() - available.min() <= 1 or len(available) < 10
    assert len(torch.unique(y_orig)) >= len(torch.unique(y_random))


def test_screening_rules(tiny_world: tuple) -> None:
    generator, _, positives, negatives = tiny_world
    images = generator(torch.randn(64, Z_DIM), torch.arange(64) % 10)
    y_orig = positives[0](images).argmax(1)
    y_adv = (y_orig + 1) % 10
    strict = NaturalFingerConfig(screen_negatives="adversarial")
    lenient = NaturalFingerConfig(screen_negatives="not_original")
    kept_strict = screen(images, positives, negatives, y_orig, y_adv, strict)
    kept_lenient = screen(images, positives, negatives, y_orig, y_adv, lenient)
    assert (kept_lenient | ~kept_strict).all(), "the lenient rule keeps whatever the strict keeps"
    identity = NaturalFingerConfig(screen_negatives="not_original", screen_transforms=("identity",))
    plain = screen(images, positives, negatives, y_orig, y_adv, identity)
    for index in torch.nonzero(plain).squeeze(1).tolist():
        x = images[index : index + 1]
        assert all(int(m(x).argmax()) == int(y_orig[index]) for m in positives)
        assert all(int(m(x).argmax()) != int(y_orig[index]) for m in negatives)
    half = NaturalFingerConfig(screen_negatives="not_original", screen_draws=3, screen_min_pass=0.5)
    assert (screen(images, positives, negatives, y_orig, y_adv, half) <= plain).all()


def test_conferrability_screen_at_one_is_the_all_or_nothing_screen(tiny_world: tuple) -> None:
    generator, _, positives, negatives = tiny_world
    images = generator(torch.randn(128, Z_DIM), torch.arange(128) % 10)
    # expected labels taken from each model in turn: positives' and negatives' labels both, so
    # the shares of positives and negatives that answer them vary over the images
    labels = torch.stack([m(images).argmax(1) for m in [*positives, *negatives]])
    y_orig = labels[torch.arange(128) % len(labels), torch.arange(128)]
    y_adv = (y_orig + 1) % 10
    plain = {"screen_transforms": ("identity",), "screen_negatives": "not_original"}
    strict = screen(images, positives, negatives, y_orig, y_adv, NaturalFingerConfig(**plain))
    conferrable = {**plain, "screen_rule": "conferrability"}
    at_one = NaturalFingerConfig(**conferrable, screen_conferrability=1.0)
    assert torch.equal(screen(images, positives, negatives, y_orig, y_adv, at_one), strict)
    half = NaturalFingerConfig(**conferrable, screen_conferrability=0.5)
    kept = screen(images, positives, negatives, y_orig, y_adv, half)
    assert (kept | ~strict).all()
    hits = torch.stack([m(images).argmax(1) == y_orig for m in positives]).float().mean(0)
    misses = torch.stack([m(images).argmax(1) != y_orig for m in negatives]).float().mean(0)
    assert torch.equal(kept, hits * misses >= 0.5)


class _Answers(torch.nn.Module):
    """A model that answers image ``i`` (its first pixel's value) with ``labels[i]``."""

    def __init__(self, labels: list[int]) -> None:
        super().__init__()
        self.labels = torch.tensor(labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(self.labels[x[:, 0, 0, 0].long()], 10).float()


def test_conferrability_keeps_an_image_one_ensemble_member_dissents_on() -> None:
    # four images; four positives and four negatives; expected label 1 everywhere
    positives = [_Answers(row) for row in ([1, 1, 1, 1], [1, 1, 1, 2], [1, 1, 2, 2], [1, 1, 1, 1])]
    negatives = [_Answers(row) for row in ([0, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1], [0, 0, 0, 0])]
    images = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 3, 32, 32)
    y_orig = torch.ones(4, dtype=torch.long)
    # scores: 1 * 1 = 1; 1 * 3/4 = 0.75; 3/4 * 3/4 = 0.5625; 2/4 * 2/4 = 0.25
    settings = {"screen_transforms": ("identity",), "screen_negatives": "not_original"}
    rule = {"screen_rule": "conferrability"}
    for threshold, expected in ((1.0, [1, 0, 0, 0]), (0.75, [1, 1, 0, 0]), (0.5, [1, 1, 1, 0])):
        config = NaturalFingerConfig(**settings, **rule, screen_conferrability=threshold)
        kept = screen(images, positives, negatives, y_orig, y_orig, config)
        assert kept.tolist() == [bool(v) for v in expected], threshold
    all_or_nothing = screen(
        images, positives, negatives, y_orig, y_orig, NaturalFingerConfig(**settings)
    )
    assert all_or_nothing.tolist() == [True, False, False, False]


def test_margin_order_stores_the_same_survivors_surest_first(tiny_world: tuple) -> None:
    from nf_dist.fingerprint.naturalfinger.images import label_probabilities
    from nf_dist.fingerprint.naturalfinger.schedule import GenerationHistory
    from nf_dist.fingerprint.naturalfinger.screen import screened_set

    generator, _, positives, negatives = tiny_world
    z = torch.randn(64, Z_DIM, generator=torch.Generator().manual_seed(3))
    y_gen = torch.arange(64) % 10
    with torch.no_grad():
        y_orig = positives[0](generator(z, y_gen)).argmax(1)
    targets = Targets(y_gen=y_gen, y_orig=y_orig, y_adv=(y_orig + 1) % 10)
    base = NaturalFingerConfig(
        num_fingerprints=64, screen_negatives="not_original", screen_transforms=("identity",)
    )

    def kept(config: NaturalFingerConfig):  # type: ignore[no-untyped-def]
        with torch.no_grad():
            return screened_set(
                generator, positives, negatives, z, targets, config, GenerationHistory()
            )

    by_latent = kept(base)
    by_margin = kept(replace(base, screen_order="margin"))
    assert len(by_latent) >= 5
    assert sorted(map(tuple, by_latent.latents.tolist())) == sorted(
        map(tuple, by_margin.latents.tolist())
    ), "the same survivors, reordered"
    assert by_latent.latents.tolist() != by_margin.latents.tolist()
    images = torch.from_numpy(by_margin.images).permute(0, 3, 1, 2).float() / 255
    labels = torch.from_numpy(by_margin.y_orig).long()
    margin = (
        label_probabilities(positives, images, labels, 64).min(0).values
        - label_probabilities(negatives, images, labels, 64).max(0).values
    )
    assert (margin[:-1] >= margin[1:] - 1e-5).all(), "surest first"
    top = kept(replace(base, screen_order="margin", num_fingerprints=3))
    np.testing.assert_array_equal(top.latents, by_margin.latents[:3])


def test_margin_balanced_takes_the_margin_order_each_label_in_turn(tiny_world: tuple) -> None:
    from nf_dist.fingerprint.naturalfinger.schedule import GenerationHistory
    from nf_dist.fingerprint.naturalfinger.screen import round_robin, screened_set

    generator, _, _, negatives = tiny_world
    positives = [_HashLabels()]  # labels spread over the classes, unlike the tiny models'
    z = torch.randn(64, Z_DIM, generator=torch.Generator().manual_seed(3))
    y_gen = torch.arange(64) % 10
    with torch.no_grad():
        y_orig = positives[0](generator(z, y_gen)).argmax(1)
    targets = Targets(y_gen=y_gen, y_orig=y_orig, y_adv=(y_orig + 1) % 10)
    base = NaturalFingerConfig(
        num_fingerprints=64,
        screen_negatives="not_original",
        screen_transforms=("identity",),
        screen_order="margin",
    )

    def kept(config: NaturalFingerConfig):  # type: ignore[no-untyped-def]
        with torch.no_grad():
            return screened_set(
                generator, positives, negatives, z, targets, config, GenerationHistory()
            )

    by_margin = kept(base)
    balanced = kept(replace(base, screen_order="margin_balanced"))
    labels = len(set(by_margin.y_orig.tolist()))
    assert labels >= 3
    turns = round_robin(torch.arange(len(by_margin)), torch.from_numpy(by_margin.y_orig))
    np.testing.assert_array_equal(balanced.latents, by_margin.latents[turns.numpy()])
    assert len(set(balanced.y_orig[:labels].tolist())) == labels, "every label once, first"
    assert balanced.y_orig.tolist() != by_margin.y_orig.tolist()


def test_round_robin_takes_each_labels_best_in_turn() -> None:
    from nf_dist.fingerprint.naturalfinger.screen import round_robin

    labels = torch.tensor([0, 0, 0, 1, 2, 1])
    order = torch.tensor([0, 1, 2, 3, 4, 5])  # best first
    assert round_robin(order, labels).tolist() == [0, 3, 4, 1, 5, 2]
    assert round_robin(torch.tensor([5, 4, 3]), labels).tolist() == [5, 4, 3]


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("screen_transforms", (), "names no transformation"),
        ("screen_transforms", ("rotate",), "unknown transformation 'rotate'"),
        ("screen_min_pass", 0.0, "screen_min_pass"),
        ("screen_draws", 0, "screen_draws"),
        ("reduction", "median", "reduction"),
        ("latent_max_norm", -1.0, "latent_max_norm"),
        ("negative_objective", "towards", "negative_objective"),
        ("screen_order", "random", "screen_order"),
        ("num_candidates", 1_000_000_000, "num_candidates is 1000000000, above"),
    ],
)
def test_bad_settings_name_their_field(field: str, value: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        NaturalFingerConfig(**{field: value})  # type: ignore[arg-type]


def test_ablation_variants_follow_table_3() -> None:
    from nf_dist.pipelines.ablation import variants

    names = list(variants(NaturalFingerConfig()))
    assert names == [
        "none",
        "adv",
        "tf",
        "d",
        "adv+tf",
        "adv+d",
        "tf+d",
        "adv+tf+d",
        "adv+tf+d(paper sign)",
    ]
    full = variants(NaturalFingerConfig())["adv+tf+d"]
    assert full.adversarial_labels and full.input_transforms and full.discriminator


def test_a_saved_descent_is_resumed_only_against_the_same_models(
    tiny_zoo: dict, tmp_path: Path
) -> None:
    """The initial selection reads only the positives, so the config and starting latents
    alone would take a descent made against other negatives for this one."""
    positives, negatives = tiny_zoo["positives"], tiny_zoo["negatives"]
    config = NaturalFingerConfig(num_candidates=64, num_optimised=16, steps=4, batch_size=32)
    saving = Checkpointing(str(tmp_path / "progress"), every=2)

    def steps_run(negative_models: list) -> int:  # type: ignore[type-arg]
        steps: list[int] = []
        context = FingerprintContext(
            positives,
            negative_models,
            generator=tiny_zoo["generator"],
            discriminator=tiny_zoo["discriminator"],
            z_dim=Z_DIM,
        )
        run = RunOptions(checkpointing=saving, on_step=lambda step, _: steps.append(step))
        # nothing may survive screening; the descent is what this test counts
        with contextlib.suppress(FingerprintError):
            METHODS.get("naturalfinger")().generate(context, config, run)
        return len(steps)

    assert steps_run(negatives) == 4
    assert steps_run(negatives) == 0, "the same models: the finished descent is resumed"
    assert steps_run(negatives[:1]) == 4, "other negatives: another descent"
    digest = modules_digest([*positives, *negatives])
    assert digest == modules_digest([*positives, *negatives])
    assert digest != modules_digest([*positives, *negatives[::-1]])
