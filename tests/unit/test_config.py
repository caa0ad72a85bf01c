"""Typed configs: unknown keys named, types checked, overrides applied, YAML round trip."""

from dataclasses import replace
from pathlib import Path

import pytest

from nf_dist.config import dump_yaml, from_dict, load_config, parse_overrides
from nf_dist.errors import ConfigError
from nf_dist.pipelines.fingerprint import FingerprintJobConfig
from nf_dist.pipelines.quickstart import DEFAULT_CONFIG, QuickstartConfig
from nf_dist.pipelines.train import GanJobConfig, TrainJobConfig


def test_unknown_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("fingerprint:\n  lamda_d: 0.3\n")
    with pytest.raises(ConfigError, match=r"fingerprint\.lamda_d.*lambda_d"):
        load_config(FingerprintJobConfig, path)


def test_wrong_type_and_bad_value() -> None:
    with pytest.raises(ConfigError, match="fingerprint.steps: expected an integer"):
        load_config(FingerprintJobConfig, overrides=["fingerprint.steps=abc"])
    with pytest.raises(ConfigError, match="lr must be positive"):
        load_config(TrainJobConfig, overrides=["train.lr=-1"])
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["novalue"])


def test_overrides_and_round_trip(tmp_path: Path) -> None:
    config = load_config(GanJobConfig, overrides=["gan.steps=7", "data.half_size=100"])
    assert config.gan.steps == 7 and config.data.half_size == 100
    path = tmp_path / "gan.yaml"
    path.write_text(dump_yaml(config))
    assert load_config(GanJobConfig, path) == config


def test_shipped_quickstart_yaml_loads() -> None:
    config = load_config(QuickstartConfig, DEFAULT_CONFIG)
    ids = [m.id for m in config.models]
    assert ids[0] == "source" and len(ids) == len(set(ids))
    uses = {m.use for m in config.models}
    assert uses == {"generation", "screening", "heldout"}
    # held-out suspects of both roles; screening-only independents stand for unseen ones
    wanted = [(r, u) for r in ("positive", "negative") for u in ("generation", "heldout")]
    for role, use in [*wanted, ("negative", "screening")]:
        assert any(m.role == role and m.use == use for m in config.models), (role, use)


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(TrainJobConfig, "no/such.yaml")


def test_moved_keys_still_load_for_one_release_with_a_warning(
    caplog: pytest.LogCaptureFixture, tmp_path
) -> None:
    legacy = tmp_path / "old.yaml"
    legacy.write_text(
        "gan_uri: g\nbench_uri: b\npositives: [p]\nnegatives: [n]\nengine: ray\nnum_shards: 3\n"
    )
    with caplog.at_level("WARNING"):
        config = load_config(FingerprintJobConfig, legacy)
    assert config.models.bench_uri == "b" and config.models.positives == ("p",)
    assert config.sharding.backend == "ray" and config.sharding.num_shards == 3
    assert "'engine' is deprecated" in caplog.text and "'sharding.backend'" in caplog.text
    # An override of the old key wins over a recipe written with the new one.
    base = {"models": {"bench_uri": "recipe"}}
    overridden = load_config(FingerprintJobConfig, overrides=["bench_uri=mine"], base=base)
    assert overridden.models.bench_uri == "mine"
    with pytest.raises(ConfigError, match="keep only models.bench_uri"):
        from_dict(FingerprintJobConfig, {"bench_uri": "a", "models": {"bench_uri": "b"}})


def test_nested_sections_validate_where_declared() -> None:
    with pytest.raises(ConfigError, match="sharding.num_shards must be at least 1"):
        from_dict(FingerprintJobConfig, {"sharding": {"num_shards": 0}})
    with pytest.raises(ConfigError, match="'x' is both a positive and a negative"):
        from_dict(FingerprintJobConfig, {"models": {"positives": ["x"], "negatives": ["x"]}})
    screened_and_optimised = {"negatives": ["x"], "screening_negatives": ["x"]}
    with pytest.raises(ConfigError, match="'x' is a screening model and among"):
        from_dict(FingerprintJobConfig, {"models": screened_and_optimised})
    with pytest.raises(ConfigError, match="models.screening_negatives lists a model twice"):
        from_dict(FingerprintJobConfig, {"models": {"screening_negatives": ["y", "y"]}})
    both_screens = {"screening_positives": ["z"], "screening_negatives": ["z"]}
    with pytest.raises(ConfigError, match="both a screening positive and negative"):
        from_dict(FingerprintJobConfig, {"models": both_screens})
    with pytest.raises(ConfigError, match="checkpoint_every must be at least 1"):
        from_dict(FingerprintJobConfig, {"checkpoint_every": 0})


def test_cpu_job_configs_share_models_and_the_chosen_settings() -> None:
    """The ablation and the Tune sweep score the experiment's held-out suspects: the same
    generation models, the same validation suspects, and the settings validation had chosen
    there when they ran (the final choice differs from those only by the discriminator term,
    which the ablation and the sweep vary themselves)."""
    from nf_dist.pipelines.ablation import AblationConfig
    from nf_dist.pipelines.experiment import ExperimentConfig
    from nf_dist.pipelines.tune.config import TuneJobConfig

    jobs = Path(__file__).resolve().parents[2] / "jobs" / "configs"
    experiment = load_config(ExperimentConfig, jobs / "cpu_experiment.yaml")
    ablation = load_config(AblationConfig, jobs / "cpu_ablation.yaml")
    tune = load_config(TuneJobConfig, jobs / "cpu_tune.yaml")
    chosen = experiment.sets["naturalfinger-offclass-margin-500"].config
    final = experiment.sets["naturalfinger-offclass-margin-500-nod"].config
    assert {k: v for k, v in final.items() if k != "discriminator"} == chosen
    sized = {"num_fingerprints", "num_candidates", "num_optimised"}  # the sweeps run smaller sets
    for name, other in (("ablation", ablation), ("tune", tune)):
        assert other.models == experiment.models, name
        assert other.validation_models == experiment.validation_models, name
        assert other.gan_uri == experiment.gans["gan64"], name
    for key, value in chosen.items():
        if key in sized:
            continue
        assert tune.base[key] == value, key
        assert getattr(ablation.fingerprint, key) == (
            tuple(value) if isinstance(value, list) else value
        ), key


@pytest.mark.parametrize(
    ("file", "profile_name"),
    [
        ("trend_cpu40.yaml", "cpu40"),
        ("trend_cpu40_hq.yaml", "cpu40_hq"),
        ("trend_cpu40_lq.yaml", "cpu40_lq"),
    ],
)
def test_the_trend_experiment_names_its_profiles_models_and_valid_sets(
    file: str, profile_name: str
) -> None:
    """Each level of the quality trend's experiment generates from its profile's ensembles only,
    scores validation suspects of its benchmark section, and every set's settings load."""
    from nf_dist.bench.catalog import load_profile
    from nf_dist.fingerprint.methods import METHODS
    from nf_dist.pipelines.experiment import ExperimentConfig

    jobs = Path(__file__).resolve().parents[2] / "jobs" / "configs"
    config = load_config(ExperimentConfig, jobs / file)
    assert config.models.bench_uri == f"runs/bench/{profile_name}"
    profile = load_profile(profile_name)
    surrogates = {m.id for m in profile.ensembles if m.role == "positive"}
    references = {m.id for m in profile.ensembles if m.role == "negative"}
    assert config.models.positives[0] == "source"
    assert set(config.models.positives[1:]) == surrogates
    assert set(config.models.negatives) == references
    bench = {m.id for m in profile.models}
    assert set(config.validation_models) < bench - {"source"}
    for name, spec in config.sets.items():
        from_dict(METHODS.get(spec.method).config_class, spec.config, where=name)
    assert {spec.method for spec in config.sets.values()} >= {"naturalfinger", "cae", "akh"}


def test_the_higher_level_runs_the_first_levels_experiment() -> None:
    """The same models, suspects, budgets and set settings at both levels, less the two agree75
    sets (a no-op while 500 candidates agree on every positive; see the config)."""
    from nf_dist.pipelines.experiment import ExperimentConfig

    jobs = Path(__file__).resolve().parents[2] / "jobs" / "configs"
    first = load_config(ExperimentConfig, jobs / "trend_cpu40.yaml")
    higher = load_config(ExperimentConfig, jobs / "trend_cpu40_hq.yaml")
    assert higher.output_uri != first.output_uri
    assert higher.models == replace(first.models, bench_uri="runs/bench/cpu40_hq")
    assert higher.validation_models == first.validation_models
    assert higher.budgets == first.budgets
    dropped = {"naturalfinger-agree75", "naturalfinger-agree75-conferrable"}
    assert set(higher.sets) == set(first.sets) - dropped
    assert all(higher.sets[name] == first.sets[name] for name in higher.sets)
    # the lower level: the first level's chosen set and its re-screen, and every baseline
    lower = load_config(ExperimentConfig, jobs / "trend_cpu40_lq.yaml")
    assert lower.models == replace(first.models, bench_uri="runs/bench/cpu40_lq")
    assert (lower.validation_models, lower.budgets) == (first.validation_models, first.budgets)
    agree75 = "naturalfinger-dropout-agree75"  # added when 415 of 15,000 agreed on all 9
    assert set(lower.sets) == set(higher.sets) - {"naturalfinger"} | {agree75}
    assert all(lower.sets[name] == first.sets[name] for name in set(lower.sets) - {agree75})
    dropout = first.sets["naturalfinger-dropout"]
    expected = replace(dropout, config={**dropout.config, "initial_agreement": 0.75})
    assert lower.sets[agree75] == expected
