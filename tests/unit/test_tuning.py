"""Tuning pieces that need no cluster: search domains, the three-way split, searchers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nf_dist.bench.selection import ModelSelection
from nf_dist.config import from_dict
from nf_dist.errors import ConfigError
from nf_dist.pipelines.tune import (
    ParamSpec,
    TuneJobConfig,
    method_settings,
    search_algorithm,
    three_way_split,
)


def _rows() -> list[dict]:
    rows = [{"id": "source", "role": "positive", "attack": "scratch"}]
    rows += [{"id": f"prune-{i}", "role": "positive", "attack": "prune"} for i in range(10)]
    rows += [{"id": f"distill-{i}", "role": "positive", "attack": "distill"} for i in range(5)]
    rows += [{"id": "mirror-source", "role": "negative", "attack": "scratch"}]
    rows += [{"id": f"indep-{i}", "role": "negative", "attack": "scratch"} for i in range(10)]
    return rows


def test_the_three_way_split_is_disjoint_complete_stratified_and_seeded() -> None:
    models = ModelSelection(positives=("source",), negatives=("mirror-source",))
    config = TuneJobConfig(models=models, split_seed=3)
    split = three_way_split(_rows(), config)
    parts = [set(split.generation), set(split.validation), set(split.test)]
    assert sum(len(p) for p in parts) == len(set().union(*parts)) == len(_rows())
    assert sum(i.startswith("prune") for i in split.validation) == 3  # 30% of 10
    assert sum(i.startswith("distill") for i in split.validation) == 2  # of 5
    assert sum(i.startswith("indep") for i in split.validation) == 3
    assert three_way_split(_rows(), config) == split
    assert three_way_split(_rows(), replace(config, split_seed=4)) != split


def test_generation_ensembles_may_generate_and_are_never_split_into_suspects() -> None:
    """Ensemble rows (the manifest's ensemble section) can be generation models; the split
    never draws them as validation or test suspects and refuses one named as validation."""
    ensembles = [
        {"id": f"ens-{r}-{i}", "role": r, "attack": "distill", "section": "ensemble"}
        for r in ("positive", "negative")
        for i in range(3)
    ]
    rows = [{**row, "section": "bench"} for row in _rows()] + ensembles
    models = ModelSelection(positives=("source", "ens-positive-0"), negatives=("ens-negative-0",))
    split = three_way_split(rows, TuneJobConfig(models=models, split_seed=3))
    assert split.generation == ("source", "ens-positive-0", "ens-negative-0")
    suspects = {*split.validation, *split.test}
    assert suspects == {row["id"] for row in _rows()} - {"source"}
    named = TuneJobConfig(models=models, validation_models=("prune-1", "ens-negative-1"))
    with pytest.raises(ConfigError, match="'ens-negative-1' is a generation ensemble"):
        three_way_split(rows, named)


def test_the_experiment_scores_apart_the_same_validation_suspects_tune_chose_on(
    tmp_path: Path,
) -> None:
    from nf_dist.pipelines.experiment import ExperimentConfig, validation_models

    models = ModelSelection(
        bench_uri=str(tmp_path), positives=("source",), negatives=("mirror-source",)
    )
    pq.write_table(pa.Table.from_pylist(_rows()), tmp_path / "manifest.parquet")
    tune = three_way_split(_rows(), TuneJobConfig(models=models, split_seed=3))
    experiment = ExperimentConfig(models=models, validation_fraction=0.3, validation_split_seed=3)
    assert validation_models(experiment) == tune.validation
    assert validation_models(replace(experiment, validation_fraction=0.0)) == ()
    role = {row["id"]: row["role"] for row in _rows()}
    named = tuple(
        next(i for i in tune.validation if role[i] == r) for r in ("negative", "positive")
    )
    assert sorted(validation_models(replace(experiment, validation_models=named))) == sorted(named)
    with pytest.raises(ConfigError, match="no model 'nope'"):
        validation_models(replace(experiment, validation_models=("nope", *named)))
    with pytest.raises(ConfigError, match="validation_fraction must be in"):
        replace(experiment, validation_fraction=1.0)


def test_split_and_domain_errors_say_what_to_fix() -> None:
    with pytest.raises(ConfigError, match="'source' is both a positive and a negative"):
        ModelSelection(positives=("source",), negatives=("source",))
    models = ModelSelection(positives=("source",), negatives=("mirror-source",))
    with pytest.raises(ConfigError, match="must not share"):
        three_way_split(_rows(), TuneJobConfig(models=models, validation_models=("source",)))
    with pytest.raises(ConfigError, match="positive and negative"):
        three_way_split(_rows(), TuneJobConfig(models=models, validation_models=("prune-1",)))
    with pytest.raises(ConfigError, match="low < high"):
        ParamSpec("uniform", low=1.0, high=1.0)
    with pytest.raises(ConfigError, match="grid or choice"):
        ParamSpec("uniform", low=0.0, high=1.0).domain("grid")
    with pytest.raises(ConfigError, match="unknown config key 'base.learning_rate'"):
        method_settings(TuneJobConfig(base={"learning_rate": 1.0}), {})


def test_yaml_search_spaces_and_the_bayesian_searcher() -> None:
    from ray import tune

    config = from_dict(
        TuneJobConfig,
        {"search_space": {"lr": {"kind": "loguniform", "low": 0.1, "high": 2.0}}},
    )
    assert isinstance(config.search_space["lr"].domain("random"), tune.search.sample.Float)
    grid = ParamSpec("choice", values=(1, 2)).domain("grid")
    assert grid == {"grid_search": [1, 2]}
    pytest.importorskip("optuna")
    from ray.tune.search.optuna import OptunaSearch

    assert isinstance(search_algorithm("optuna", 0), OptunaSearch)
    from ray.tune.search.basic_variant import BasicVariantGenerator

    assert isinstance(search_algorithm("random", 0), BasicVariantGenerator)
