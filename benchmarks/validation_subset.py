"""Validation ARUC of an experiment's sets on a subset of its validation suspects.

    python -m benchmarks.validation_subset --config CONFIG --rates RATES

Scores every method in ``RATES`` (an evaluation's ``rates.parquet``) on the ``validation_models``
of ``CONFIG`` (an experiment config), so that a trial that moved some validation suspects into
screening can be compared with earlier sets on the suspects both kept. Prints JSON.
"""

from __future__ import annotations

import argparse
import json

import pyarrow.parquet as pq

from nf_dist.config import load_config
from nf_dist.pipelines.experiment import ExperimentConfig
from nf_dist.scoring import summarize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--rates", required=True)
    args = parser.parse_args()
    validation = list(load_config(ExperimentConfig, args.config).validation_models)
    rates = pq.read_table(args.rates).to_pandas()
    scores = {}
    for method, group in rates[rates["suspect"].isin(validation)].groupby("method"):
        positive = group[group["role"] == "positive"]["rate"].to_numpy()
        negative = group[group["role"] == "negative"]["rate"].to_numpy()
        scores[method] = round(summarize(positive, negative)["aruc"], 4)
    print(json.dumps({"validation_suspects": len(validation), "validation_aruc": scores}))


if __name__ == "__main__":
    main()
