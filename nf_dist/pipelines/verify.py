"""Verify suspects against a fingerprint set: ``nf-dist verify``.

Each suspect (a model file in any supported format, or a deployed HTTP API) is asked for labels
only. Its matches get a p-value under the null "this model is independent", calibrated on
independent models the owner holds (``calibration``) or loaded from a saved null (``null_uri``);
the verdict is taken at the false-positive rate ``alpha``. ``sequential`` asks ``batch``
fingerprints at a time and stops as soon as the verdict is certain at that error rate
(:mod:`nf_dist.verification.decision`). With ``evidence_dir`` every verification leaves an
evidence record (:mod:`nf_dist.verification.evidence`). Several suspects run as Ray tasks with
``backend: ray``, one task each, as in ``nf-dist evaluate``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal

import numpy as np
import ray

from nf_dist.data import DataConfig, load_splits
from nf_dist.distributed.cluster import init_ray
from nf_dist.errors import ConfigError
from nf_dist.fingerprint.fingerprint_set import FingerprintSet, load_fingerprint_set
from nf_dist.models.checkpoint import load_classifier
from nf_dist.scoring import matching_rate, summarize
from nf_dist.storage.uri import read_bytes, write_bytes_atomic
from nf_dist.verification.decision import (
    Decision,
    NullModel,
    SequentialTest,
    decide,
    fit_null,
)
from nf_dist.verification.evidence import build_record, set_digest, write_evidence
from nf_dist.verification.files import SuspectFile, open_suspect
from nf_dist.verification.http import EndpointConfig, HttpOracle
from nf_dist.verification.oracles import model_oracle

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SuspectSpec:
    """One suspect: a model ``file`` or a deployed ``endpoint`` (exactly one).

    ``name`` labels it in outputs (default: its file or URL); ``known`` marks a suspect whose
    status the owner knows, for the separation metrics.
    """

    name: str = ""
    file: SuspectFile | None = None
    endpoint: EndpointConfig | None = None
    known: Literal["stolen", "independent"] | None = None

    def __post_init__(self) -> None:
        if (self.file is None) == (self.endpoint is None):
            raise ConfigError("a suspect needs exactly one of file: {...} or endpoint: {...}")

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        return self.file.uri if self.file is not None else self.endpoint.url  # type: ignore[union-attr]


@dataclass(frozen=True)
class VerifyConfig:
    """``nf-dist verify`` (see the module docstring).

    Attributes:
        fingerprints: the fingerprint set (local or ``s3://``).
        suspects: the suspects to verify.
        calibration: checkpoints of independent models the owner holds; their matching rates
            calibrate the null.
        null_uri: a null saved by an earlier run (``save_null_uri``), instead of calibration.
        save_null_uri: write the calibrated null here, for later runs.
        alpha: the false-positive rate of the verdict (1e-3: one independent model in a
            thousand is wrongly called stolen).
        sequential: query ``batch`` fingerprints at a time and stop once the verdict is certain.
        batch: fingerprints per look of the sequential test.
        evidence_dir: write one evidence record per suspect here (query logs beside them).
        cover: the clean images HTTP suspects get as cover traffic (the test split of ``cover``).
        backend: ``local`` (one suspect after another) or ``ray`` (one task per suspect).
        address: the Ray cluster (None: ``RAY_ADDRESS`` or an embedded local Ray).
    """

    fingerprints: str = ""
    suspects: tuple[SuspectSpec, ...] = ()
    calibration: tuple[str, ...] = ()
    null_uri: str | None = None
    save_null_uri: str | None = None
    alpha: float = 1e-3
    sequential: bool = False
    batch: int = 10
    evidence_dir: str | None = None
    cover: DataConfig = field(default_factory=DataConfig)
    backend: Literal["local", "ray"] = "local"
    address: str | None = None

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ConfigError(
                f"alpha (the false-positive rate) must be in (0, 1), got {self.alpha}"
            )
        if self.batch < 1:
            raise ConfigError(f"batch must be at least 1, got {self.batch}")
        if not self.calibration and self.null_uri is None:
            raise ConfigError(
                "verify needs a null: name independent models with calibration (--calibrate "
                "FILE ...) or a saved null with null_uri (--null FILE)"
            )


def calibrate(config: VerifyConfig, fingerprints: FingerprintSet) -> NullModel:
    """The null: loaded, or fitted on the calibration models' matching rates.

    A null describes how independent models answer one fingerprint set, so a saved null records
    the set's sha256 and is refused for any other set.

    Raises:
        ConfigError: a file that is not a saved null, or one fitted on another set.
    """
    digest = set_digest(config.fingerprints)
    if config.null_uri is not None:
        try:
            saved = json.loads(read_bytes(config.null_uri))
            null = NullModel(
                saved["a"], saved["b"], saved["calibration_mean"], saved["calibration_models"]
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{config.null_uri} is not a saved null ({exc})") from exc
        if saved.get("fingerprints_sha256", digest) != digest:
            raise ConfigError(
                f"{config.null_uri} was calibrated on another fingerprint set (sha256 "
                f"{saved['fingerprints_sha256']}), not {config.fingerprints}; calibrate a null "
                "for this set (--calibrate MODEL ... --save-null FILE)"
            )
        return null
    made_it = [
        *fingerprints.info.get("negatives", []),
        *fingerprints.info.get("screening_negatives", []),
    ]
    generation = {PurePosixPath(str(n)).name for n in made_it}
    for uri in config.calibration:
        if PurePosixPath(uri).name in generation:
            logger.warning(
                "calibration model %s generated or screened this set (it was screened to "
                "disagree with the fingerprints), so the null it gives is too lenient; calibrate "
                "on independent models held out from generation",
                uri,
            )
    rates = []
    for uri in config.calibration:
        model, _ = load_classifier(uri)
        rates.append(matching_rate(model_oracle(model)(fingerprints.inputs()), fingerprints.y_orig))
    null = fit_null(rates, len(fingerprints))
    if config.save_null_uri is not None:
        record = {**null.to_dict(), "fingerprints_sha256": digest}
        write_bytes_atomic(config.save_null_uri, json.dumps(record, indent=2).encode())
    return null


def check_one(
    spec: SuspectSpec,
    fingerprints: FingerprintSet,
    null: NullModel,
    config: VerifyConfig,
    cover: np.ndarray,
) -> dict[str, Any]:
    """Verify one suspect; returns its row (and writes its evidence)."""
    if spec.endpoint is not None:
        needed = len(fingerprints) + round(len(fingerprints) * spec.endpoint.cover_ratio)
        if spec.endpoint.budget < needed:
            raise ConfigError(
                f"endpoint.budget {spec.endpoint.budget} is smaller than the {needed} images a "
                f"full run may send ({len(fingerprints)} fingerprints and their cover); raise it"
            )
        log = (
            f"{config.evidence_dir}/{_slug(spec.label)}.queries.jsonl"
            if config.evidence_dir
            else None
        )
        oracle: Any = HttpOracle(spec.endpoint, cover, log)
        resumed = len(oracle.log.records)
        if resumed:
            # Answers are keyed by image only: whatever serves the URL now is not asked again.
            logger.warning(
                "%s holds %d answers from an earlier run (since %s); they are reused, not asked "
                "again; to query %s anew, use a fresh evidence directory",
                log,
                resumed,
                oracle.log.records[0].get("time"),
                spec.endpoint.url,
            )
        identity, kind, classes = spec.endpoint.url, "http", spec.endpoint.num_classes
    else:
        assert spec.file is not None
        opened = open_suspect(spec.file)
        oracle, identity, kind, classes = opened.oracle, opened.identity, "file", opened.num_classes
    try:
        if classes != fingerprints.num_classes:
            raise ConfigError(
                f"the set labels {fingerprints.num_classes} classes but suspect {spec.label} "
                f"answers {classes}; use a fingerprint set made for this task"
            )
        decision, answers = _ask(oracle, fingerprints, null, config)
    finally:
        if isinstance(oracle, HttpOracle):
            oracle.close()  # its connections and event-loop thread, whatever happened
    suspect: dict[str, Any] = {
        "name": spec.label,
        "identity": identity,
        "kind": kind,
        "known": spec.known,
    }
    queries = [{"index": i, "label": int(v)} for i, v in enumerate(answers)]
    if isinstance(oracle, HttpOracle):
        suspect["query_log_sha256"] = oracle.log.sha256()
        suspect["protocol"] = oracle.config.protocol
        # Counts over every run that appended to the log (the budget's own count).
        suspect["images_sent"] = oracle.log.images_sent
        suspect["images_retried"] = oracle.log.images_retried
        suspect["images_answered"] = len(oracle.log.records)
        suspect["requests_this_run"] = oracle.requests
        suspect["answers_resumed"] = resumed
        queries = [r for r in oracle.log.records if not r.get("cover")]
    if config.evidence_dir:
        record = build_record(config.fingerprints, fingerprints, suspect, decision, null, queries)
        write_evidence(config.evidence_dir, _slug(spec.label), record)
    return {
        "suspect": spec.label,
        "known": spec.known,
        "matching_rate": decision.matching_rate,
        "p_value": decision.p_value,
        "stolen": decision.stolen,
        "queries": decision.queries,
    }


def _ask(
    oracle: Any, fingerprints: FingerprintSet, null: NullModel, config: VerifyConfig
) -> tuple[Decision, np.ndarray]:
    """Query in the set's order: all at once, or look by look until the verdict is certain."""
    n = len(fingerprints)
    if not config.sequential:
        answers = np.asarray(oracle(fingerprints.inputs()))
        return decide(int((answers == fingerprints.y_orig).sum()), n, null, config.alpha), answers
    test = SequentialTest(n, null, config.alpha, config.batch)
    answers = np.zeros(0, np.int64)
    for size in test.look_sizes():
        new = np.asarray(oracle(fingerprints.inputs()[len(answers) : size]))
        answers = np.concatenate([answers, new])
        matches = int((answers == fingerprints.y_orig[:size]).sum())
        decision = test.update(matches, size)
        if decision.stolen is not None:
            return decision, answers
    raise AssertionError("the last look always decides")


def _slug(name: str) -> str:
    return name.replace("://", "_").replace("/", "_").replace(":", "_")


@ray.remote(num_cpus=1)
def _check_task(*args: Any) -> dict[str, Any]:  # pragma: no cover - runs in a Ray worker
    return check_one(*args)


def run_verify(config: VerifyConfig) -> dict[str, Any]:
    """Verdicts per suspect and, with suspects of known status, the separation metrics.

    Returns ``{"alpha", "null", "suspects": [rows], "metrics"}``.
    """
    if not config.suspects:
        raise ConfigError("name at least one suspect (a model file or --endpoint URL)")
    fingerprints = load_fingerprint_set(config.fingerprints)
    null = calibrate(config, fingerprints)
    cover = np.zeros((0, 32, 32, 3), np.uint8)
    if any(spec.endpoint is not None for spec in config.suspects):
        cover = load_splits(config.cover, with_query=False).test.images
    if config.backend == "ray":
        init_ray(config.address)
        shared = [ray.put(x) for x in (fingerprints, null, config, cover)]
        rows = ray.get([_check_task.remote(spec, *shared) for spec in config.suspects])
    else:
        rows = [check_one(spec, fingerprints, null, config, cover) for spec in config.suspects]
    stolen = [r["matching_rate"] for r in rows if r["known"] == "stolen"]
    independent = [r["matching_rate"] for r in rows if r["known"] == "independent"]
    metrics = summarize(stolen, independent) if stolen and independent else None
    return {"alpha": config.alpha, "null": null.to_dict(), "suspects": rows, "metrics": metrics}
