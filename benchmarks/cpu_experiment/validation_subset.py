"""Scores of an experiment's sets on a subset of its suspects.

    python -m benchmarks.cpu_experiment.validation_subset --config CONFIG --rates RATES
        [--heldout-of METRICS] [--budget B --sets DIR]

Scores every method in ``RATES`` (an evaluation's ``rates.parquet``) on the ``validation_models``
of ``CONFIG`` (an experiment config), so that a trial that moved some validation suspects into
screening can be compared with earlier sets on the suspects both kept. With ``--heldout-of`` (a
trial's ``metrics.json``), also on that trial's held-out suspects, with the bootstrap interval
the evaluation gives (1,000 resamples, seed 0, suspects in manifest order), the bound the mean
rates put on it (``aruc_bound``) and the mean matching rates by kind of suspect: a trial that
took held-out suspects as generation models is compared with earlier sets on the ones left. With
``--budget``, each suspect's rate is recomputed from its first B answers (``answers.parquet``
beside ``RATES``) against the first B expected labels of the set (``DIR/<method>.parquet``), as
the evaluation's budget curves do. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from benchmarks.cpu_experiment.run import rates_by_group
from nf_dist.config import load_config
from nf_dist.fingerprint.fingerprint_set import load_fingerprint_set
from nf_dist.pipelines.experiment import ExperimentConfig
from nf_dist.scoring import aruc, aruc_bound, bootstrap_ci, matching_rate


def _per_method(
    rates: pd.DataFrame, suspects: list[str], score: Callable[[np.ndarray, np.ndarray], Any]
) -> dict[str, Any]:
    """``score(positive rates, negative rates)`` of each method on ``suspects``."""
    scores = {}
    for method, group in rates[rates["suspect"].isin(suspects)].groupby("method"):
        positive = group[group["role"] == "positive"]["rate"].to_numpy()
        negative = group[group["role"] == "negative"]["rate"].to_numpy()
        scores[str(method)] = score(positive, negative)
    return scores


def _aruc(positive: np.ndarray, negative: np.ndarray) -> float:
    return round(aruc(positive, negative), 4)


def _aruc_ci95(positive: np.ndarray, negative: np.ndarray) -> list[float]:
    """ARUC and its interval as the evaluation draws it."""
    low, high = bootstrap_ci(positive, negative)
    return [_aruc(positive, negative), round(low, 4), round(high, 4)]


def _bound(positive: np.ndarray, negative: np.ndarray) -> float:
    return round(aruc_bound(positive, negative), 4)


def _rates_at_budget(rates: pd.DataFrame, answers_uri: str, sets: str, budget: int) -> pd.DataFrame:
    """``rates`` with each rate recomputed from the first ``budget`` fingerprints."""
    answers = pq.read_table(answers_uri).to_pandas().set_index(["method", "suspect"])
    expected = {
        method: load_fingerprint_set(f"{sets}/{method}.parquet").y_orig
        for method in rates["method"].unique()
    }
    short = {method: len(labels) for method, labels in expected.items() if len(labels) < budget}
    if short:
        raise SystemExit(f"--budget {budget} is larger than these sets: {short}; lower it")
    expected = {method: labels[:budget] for method, labels in expected.items()}
    rates = rates.copy()
    rates["rate"] = [
        matching_rate(np.asarray(answers.loc[(m, s), "labels"])[:budget], expected[m])
        for m, s in zip(rates["method"], rates["suspect"])
    ]
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--rates", required=True)
    parser.add_argument("--heldout-of", help="a trial's metrics.json: score its held-out too")
    parser.add_argument("--budget", type=int, help="score the first B fingerprints of each set")
    parser.add_argument("--sets", help="with --budget: the folder of the evaluated sets")
    args = parser.parse_args()
    validation = list(load_config(ExperimentConfig, args.config).validation_models)
    rates = pq.read_table(args.rates).to_pandas()
    if args.budget is not None:
        if not args.sets:
            parser.error("--budget needs --sets (the folder of the evaluated sets)")
        answers = args.rates.replace("rates.parquet", "answers.parquet")
        rates = _rates_at_budget(rates, answers, args.sets, args.budget)
    result: dict[str, object] = {
        "budget": args.budget,
        "validation_suspects": len(validation),
        "validation_aruc": _per_method(rates, validation, _aruc),
    }
    if args.heldout_of:
        with open(args.heldout_of) as file:
            heldout = list(json.load(file)["split"]["heldout_models"])
        result["heldout_suspects"] = len(heldout)
        result["heldout_aruc_ci95"] = _per_method(rates, heldout, _aruc_ci95)
        result["heldout_aruc_bound"] = _per_method(rates, heldout, _bound)
        if args.budget is None:
            result["heldout_rates_by_group"] = rates_by_group(args.rates, heldout)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
