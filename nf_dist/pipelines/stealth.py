"""Stealthiness (Table 2) of an experiment's sets: how often the adversary's detector flags them.

The adversary trains a detector (:mod:`nf_dist.fingerprint.stealth`) on its fine-tuning images
against Gaussian-noise and FGSM versions of them (FGSM against the model it holds), one detector
per seed, and the detection rate of each set of images is the share it flags. Detectors are saved
under the experiment's ``stealth/`` and reused while the adversary's weights, the data and the
settings match (each takes about a minute to train on a 2-core CPU, on every re-run otherwise).
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from torch import nn

from nf_dist.bench import load
from nf_dist.errors import CheckpointError
from nf_dist.fingerprint.stealth import (
    DetectorConfig,
    detection_rate,
    detector_cnn,
    train_detector,
)
from nf_dist.storage.artifacts import plain_key, same_key
from nf_dist.storage.checkpoints import SIDECAR_SUFFIX, load_checkpoint, save_checkpoint
from nf_dist.storage.uri import exists, join

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StealthConfig:
    """The adversary's detector, trained once per seed (``seeds: []`` skips the step).

    ``adversary_model`` is the benchmark id of the model whose FGSM examples the detector learns
    (the adversary holds the stolen model; default: the first positive).
    """

    seeds: tuple[int, ...] = (0, 1, 2)
    adversary_model: str | None = None
    detector: DetectorConfig = field(default_factory=DetectorConfig)


@dataclass(frozen=True)
class Adversary:
    """What the detectors are trained from: a benchmark model, its fine-tuning images and the
    data config they came from (part of what a saved detector must match)."""

    bench_uri: str
    model_id: str
    images: Any
    data: dict[str, Any]


def measure_stealth(
    config: StealthConfig, adversary: Adversary, images: dict[str, np.ndarray], cache_uri: str
) -> dict[str, Any]:
    """Each named batch of ``images``' detection rate, per seed and averaged."""
    bench = load(adversary.bench_uri)
    weights = bench.expected_sha256(adversary.model_id)

    @functools.cache  # loaded once, and only if a detector has to be trained
    def adversary_model() -> nn.Module:
        return bench.model(adversary.model_id)

    per_seed: dict[str, list[float]] = {name: [] for name in images}
    for seed in config.seeds:
        settings = replace(config.detector, seed=seed)
        key = plain_key(
            {
                "adversary_model": adversary.model_id,
                "adversary_sha256": weights,
                "detector": asdict(settings),
                "data": adversary.data,
            }
        )
        uri = join(cache_uri, f"detector-seed{seed}")
        detector = _saved_detector(uri, key)
        if detector is None:
            started = time.perf_counter()
            detector = train_detector(adversary.images, adversary_model(), settings)
            save_checkpoint(uri, detector.state_dict(), {"kind": "stealth_detector", "key": key})
            logger.info(
                "stealth detector seed %d trained in %.0fs", seed, time.perf_counter() - started
            )
        for name, batch in images.items():
            per_seed[name].append(detection_rate(detector, batch))
    return {
        "adversary_model": adversary.model_id,
        "seeds": list(config.seeds),
        "detector": asdict(config.detector),
        "detection_rate": {
            name: {"mean": float(np.mean(rates)), "std": float(np.std(rates)), "per_seed": rates}
            for name, rates in per_seed.items()
        },
    }


def _saved_detector(uri: str, key: dict[str, Any]) -> nn.Module | None:
    """The detector saved at ``uri`` if it was trained for ``key`` (same adversary weights,
    data and settings), else None."""
    if not exists(uri + SIDECAR_SUFFIX):
        return None
    try:
        tensors, meta = load_checkpoint(uri)
    except CheckpointError as exc:
        logger.warning("ignoring unreadable stealth detector %s: %s", uri, exc)
        return None
    if not same_key(meta.get("key"), key):
        return None
    detector = detector_cnn()
    detector.load_state_dict(tensors)
    logger.info("stealth detector reused from %s", uri)
    return detector.eval()
