"""Verify suspects against a fingerprint set: ``nf-dist verify``.

Each suspect (a checkpoint) is asked for labels only; its matching rate decides the verdict. With
suspects known to be stolen and known to be independent, the separation metrics come along.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nf_dist.errors import ConfigError
from nf_dist.fingerprint.fingerprint_set import load_fingerprint_set
from nf_dist.models.checkpoint import load_classifier
from nf_dist.scoring import summarize
from nf_dist.verify import model_oracle, verify


@dataclass(frozen=True)
class VerifyConfig:
    """``nf-dist verify``.

    Attributes:
        fingerprints: the fingerprint set (local or ``s3://``).
        suspects: suspect checkpoints of unknown status.
        positives, negatives: suspects known to be stolen / independent (for ARUC).
        threshold: judged stolen when the matching rate is at least this.
        unsafe_allow_pickle: suspect files accepted as pickles (only files you trust).
    """

    fingerprints: str = ""
    suspects: tuple[str, ...] = ()
    positives: tuple[str, ...] = ()
    negatives: tuple[str, ...] = ()
    threshold: float = 0.5
    unsafe_allow_pickle: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not 0 <= self.threshold <= 1:
            raise ConfigError(f"threshold must lie in [0, 1], got {self.threshold}")


def run_verify(config: VerifyConfig) -> dict[str, Any]:
    """Verdicts per suspect and, with known positives and negatives, the metrics.

    Returns ``{"threshold", "suspects": [{suspect, known_stolen, matching_rate, stolen}],
    "metrics"}``.
    """
    labelled = (
        [(s, None) for s in config.suspects]
        + [(s, True) for s in config.positives]
        + [(s, False) for s in config.negatives]
    )
    if not labelled:
        raise ConfigError("name at least one suspect checkpoint (or --positive/--negative)")
    fingerprints = load_fingerprint_set(config.fingerprints)
    rows: list[dict[str, Any]] = []
    for uri, known in labelled:
        model, _ = load_classifier(uri, unsafe_pickle=uri in config.unsafe_allow_pickle)
        classes = model.num_classes
        if fingerprints.num_classes != classes:
            raise ConfigError(
                f"{config.fingerprints} labels {fingerprints.num_classes} classes but suspect "
                f"{uri} answers {classes}; use a fingerprint set made for this task"
            )
        verdict = verify(fingerprints, uri, model_oracle(model), config.threshold)
        rows.append(
            {
                "suspect": uri,
                "known_stolen": known,
                "matching_rate": verdict.matching_rate,
                "stolen": verdict.stolen,
            }
        )
    positive = [r["matching_rate"] for r in rows if r["known_stolen"] is True]
    negative = [r["matching_rate"] for r in rows if r["known_stolen"] is False]
    metrics = summarize(positive, negative) if positive and negative else None
    return {"threshold": config.threshold, "suspects": rows, "metrics": metrics}
