"""The generation ensembles in a built benchmark: their manifest section, and how closely each
follows the owner's source."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from nf_dist.bench.catalog import Profile
from nf_dist.bench.floors import source_id
from nf_dist.bench.store import BenchStore
from nf_dist.data.config import load_splits
from nf_dist.models.checkpoint import load_classifier
from nf_dist.models.inference import predict

logger = logging.getLogger(__name__)


def mark_ensembles(store: BenchStore, profile: Profile, manifest: list[dict[str, Any]]) -> None:
    """Tag every manifest row with its section (``bench`` or ``ensemble``), and record each
    ensemble model's test-set agreement with the source (the share of test images both
    label alike), computed once per committed model and kept in its row: how close a surrogate
    follows the source, and how far a reference stands from it."""
    ensembles = {m.id for m in profile.ensembles}
    for row in manifest:
        row["section"] = "ensemble" if row["id"] in ensembles else "bench"
    missing = [
        r for r in manifest if r["section"] == "ensemble" and "agreement_with_source" not in r
    ]
    if not missing:
        return
    source = source_id(profile.plan())
    if source not in {r["id"] for r in manifest}:
        return
    test = load_splits(profile.data, with_query=False).test.images
    reference = predict(load_classifier(store.model_stem(source))[0], test)
    for row in missing:
        labels = predict(load_classifier(store.model_stem(row["id"]))[0], test)
        row["agreement_with_source"] = float(np.mean(labels == reference))
        store.commit_row({k: v for k, v in row.items() if k != "section"})
    logger.info("ensembles: agreement with %s recorded for %s", source, [r["id"] for r in missing])
