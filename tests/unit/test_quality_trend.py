"""The quality trend's summary on the recorded cpu experiment: the validation rule picks the
recorded `ours`, and its held-out numbers are the ones the project reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from benchmarks.quality_trend.run import (
    choose_ours,
    level_row,
    markdown,
    plot,
    quality_correlation,
)

RECORDED = Path(__file__).resolve().parents[2] / "benchmarks" / "cpu_experiment" / "results"


@pytest.fixture(scope="module")
def metrics() -> dict:
    return json.loads((RECORDED / "experiment" / "metrics.json").read_text())


def test_the_validation_rule_picks_the_recorded_choice(metrics: dict) -> None:
    # the recorded experiment chose among its variants, not its seed and GAN replicates
    variants = [n for n in metrics["methods"] if n.startswith("naturalfinger") and "seed" not in n]
    variants = [n for n in variants if "sagan" not in n]
    assert choose_ours(metrics["methods"], variants) == "naturalfinger-offclass-margin-500-nod"
    with pytest.raises(ValueError, match="no NaturalFinger set"):
        choose_ours({"akh": metrics["methods"]["akh"]})


def test_a_level_reports_ours_against_the_best_baseline(metrics: dict, tmp_path: Path) -> None:
    variants = ["naturalfinger", "naturalfinger-offclass-margin-500-nod"]
    rates = pq.read_table(RECORDED / "experiment" / "rates.parquet").to_pylist()
    level = level_row(
        metrics, 0.77, {"distill-a": 0.7, "knockoff-b": 0.8}, variants, rates, {"akh": 200}
    )
    ours = level["sets"][level["ours"]]
    assert ours["aruc"] == pytest.approx(0.680, abs=5e-4)  # the project's reported 0.680
    assert level["best_baseline"] == "metafinger"
    assert level["sets"]["metafinger"]["aruc"] == pytest.approx(0.619, abs=5e-4)
    # [0.621, 0.733] lies above MetaFinger's 0.619, barely
    assert level["ours_interval_above_every_baseline"] is True
    assert level["mean_student_agreement"] == pytest.approx(0.75)
    # the project's reported groups: its students match 0.71-0.75, scratch independents 0.33
    groups = level["sets"][level["ours"]]["group_rates"]
    assert 0.70 < groups["students"] < 0.76 and 0.25 < groups["independent"] < 0.40
    assert groups["derived"] > groups["students"] > groups["independent"]
    assert groups["independent"] > groups["independent students"] > groups["mirror-derived"]
    assert groups["mirror-derived"] < 0.05 and level["sets"]["akh"]["fingerprints"] == 200
    # a negative's accuracy against its rate: a set that tracks quality correlates fully
    negatives = [
        r
        for r in rates
        if r["method"] == "akh" and r["role"] == "negative" and r["use"] != "generation"
    ]
    tracking = [{**r, "method": "quality"} for r in negatives]
    accuracy = {r["suspect"]: r["rate"] / 2 + 0.4 for r in tracking}  # accuracy = f(rate)
    assert quality_correlation(tracking, accuracy)["quality"] == pytest.approx(1.0)
    flat = {r["suspect"]: 0.7 for r in tracking}
    assert quality_correlation(tracking, flat)["quality"] is None
    record = {"command": "x", "machine": {"cpu_model": "cpu"}, "levels": {"cpu": level}}
    assert "naturalfinger-offclass-margin-500-nod (ours)" in markdown(record)
    plot({"cpu": level, "hq": {**level, "source_test_accuracy": 0.86}}, tmp_path / "trend.png")
    assert (tmp_path / "trend.png").stat().st_size > 1000


def test_mistake_agreement_counts_only_the_sources_mistakes() -> None:
    from benchmarks.quality_trend.agreement import agreements, group_of

    labels = np.array([0, 1, 2, 3, 4, 5])
    source = np.array([0, 1, 2, 3, 9, 9])  # wrong on the last two
    twin = np.array([0, 1, 2, 7, 9, 8])  # one of the source's two mistakes
    result = agreements(source, labels, twin)
    assert result == {"agreement": pytest.approx(4 / 6), "mistake_agreement": 0.5}
    row = {"role": "negative", "attack": "scratch", "mirror_of": None, "section": "bench"}
    assert group_of(row) == "independents"
    assert group_of({**row, "mirror_of": "source"}) == "mirror"
    assert group_of({**row, "section": "ensemble"}) == "references"
    assert group_of({**row, "role": "positive", "attack": "prune"}) is None


def test_levels_with_different_sets_choose_ours_among_the_shared_ones(
    metrics: dict, tmp_path: Path
) -> None:
    from benchmarks.quality_trend.run import recorded_level, same_candidates

    best, other = "naturalfinger-offclass-margin-500-nod", "naturalfinger"
    kept = {"methods": {n: metrics["methods"][n] for n in (best, other, "metafinger", "akh")}}
    first = level_row({**metrics, **kept}, 0.77, {})
    assert first["ours"] == best
    # the second level made only `other`: both levels then choose among `other` alone
    lower = {**first, "ours": other, "sets": {k: v for k, v in first["sets"].items() if k != best}}
    levels = {"cpu": first, "lq": lower}
    assert same_candidates(levels) == [other]
    assert first["ours"] == lower["ours"] == other
    assert first["ours_of_its_own_sets"] == best and lower["ours_of_its_own_sets"] == other
    record = {"command": "x", "machine": {"cpu_model": "cpu"}, "levels": levels}
    assert f"validation ARUC chooses {best}" in markdown(record)
    assert first["best_baseline"] == "metafinger"
    with pytest.raises(ValueError, match="share no NaturalFinger set"):
        same_candidates({"a": first, "b": {**first, "sets": {"akh": first["sets"]["akh"]}}})
    # a level summarised by an earlier run comes back whole, with where it came from
    path = tmp_path / "quality_trend.json"
    path.write_text(json.dumps({"command": "made it", "levels": {"cpu": first}}))
    assert recorded_level(path) == {**first, "from_record": str(path), "made_by": "made it"}
    path.write_text(json.dumps({"command": "made it", "levels": levels}))
    with pytest.raises(ValueError, match="holds 2 levels"):
        recorded_level(path)
