"""The three-way split of a benchmark's models and the validation scorer."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from nf_dist.bench import load
from nf_dist.errors import ConfigError
from nf_dist.fingerprint.fingerprint_set import FingerprintSet
from nf_dist.models.inference import predict
from nf_dist.pipelines.tune.config import TuneJobConfig
from nf_dist.scoring import matching_rate, summarize


@dataclass(frozen=True)
class ThreeWaySplit:
    """Benchmark ids by use; disjoint, and together every model of the benchmark."""

    generation: tuple[str, ...]
    validation: tuple[str, ...]
    test: tuple[str, ...]


def three_way_split(rows: list[dict[str, Any]], config: TuneJobConfig) -> ThreeWaySplit:
    """Split the benchmark's manifest rows for a sweep (see :func:`split_models`)."""
    return split_models(
        rows,
        config.models.ids,
        config.validation_models,
        config.validation_fraction,
        config.split_seed,
    )


def split_models(
    rows: list[dict[str, Any]],
    generation: tuple[str, ...],
    validation_models: tuple[str, ...],
    validation_fraction: float,
    split_seed: int,
) -> ThreeWaySplit:
    """Split the benchmark's manifest rows (see :class:`ThreeWaySplit`): the generation models
    (benchmark or ensemble rows), then ``validation_models`` or ``validation_fraction`` of the
    other benchmark rows stratified by (role,
    attack) and drawn with ``split_seed``, then the test suspects. The same arguments give the
    same split wherever it is made (``nf-dist tune``, ``nf-dist experiment``).

    Raises:
        ConfigError: unknown ids, overlaps, or a validation set without both roles.
    """
    by_id = {row["id"]: row for row in rows}
    named = (*generation, *validation_models)
    unknown = [i for i in named if i not in by_id]
    if unknown:
        raise ConfigError(f"the benchmark has no model {unknown[0]!r}; see its manifest")
    if len(set(named)) != len(named):
        raise ConfigError("positives, negatives and validation_models must not share a model")
    # the generation-only ensembles share the manifest and are never suspects
    suspects = [i for i, row in by_id.items() if (row.get("section") or "bench") == "bench"]
    ensembles = [i for i in validation_models if i not in suspects]
    if ensembles:
        raise ConfigError(
            f"validation model {ensembles[0]!r} is a generation ensemble, never a suspect; name "
            "benchmark models (the manifest's bench section)"
        )
    rest = [i for i in suspects if i not in generation]
    if validation_models:
        validation = list(validation_models)
    else:
        strata: dict[tuple[str, str], list[str]] = defaultdict(list)
        for model_id in sorted(rest):
            strata[(by_id[model_id]["role"], by_id[model_id]["attack"])].append(model_id)
        rng = np.random.default_rng(split_seed)
        validation = []
        for key in sorted(strata):
            members = strata[key]
            count = int(round(validation_fraction * len(members)))
            validation += [members[j] for j in sorted(rng.permutation(len(members))[:count])]
    roles = {by_id[i]["role"] for i in validation}
    if roles != {"positive", "negative"}:
        raise ConfigError(
            "the validation models need positive and negative suspects; name validation_models "
            "or raise validation_fraction"
        )
    test = [i for i in rest if i not in set(validation)]
    return ThreeWaySplit(tuple(generation), tuple(sorted(validation)), tuple(sorted(test)))


class ValidationScorer:
    """Label-only matching rates of the validation suspects, summarised as the objective."""

    def __init__(self, bench_uri: str, ids: tuple[str, ...]) -> None:
        bench = load(bench_uri)
        roles = {r["id"]: r["role"] for r in bench.manifest.to_pylist()}
        self.models = [(roles[i], bench.model(i)) for i in ids]

    def score(self, fingerprints: FingerprintSet) -> dict[str, float]:
        """``val_aruc``, ``val_tpr_at_1pct_fpr`` and friends; an empty set scores 0."""

        if len(fingerprints) == 0:
            return {"val_aruc": 0.0, "val_tpr_at_1pct_fpr": 0.0, "num_fingerprints": 0}
        inputs = fingerprints.inputs()
        rates: dict[str, list[float]] = {"positive": [], "negative": []}
        for role, model in self.models:
            rates[role].append(matching_rate(predict(model, inputs), fingerprints.y_orig))
        metrics = summarize(rates["positive"], rates["negative"])
        return {
            **{f"val_{k}": v for k, v in metrics.items() if not k.startswith("num_")},
            "num_fingerprints": len(fingerprints),
        }
