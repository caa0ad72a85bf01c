"""The paper's ablation (Table 3): NaturalFinger with each of the eight combinations of its three
tricks, plus the discriminator-sign choice, evaluated on the same benchmark.

Tricks: adversarial labels (off: a random label), input transformations (off: identity only) and
the discriminator term (off: lambda 0). The sign variant runs all three tricks with the paper's
``max(0, 1 + D(x))`` term instead of the generator-side default. Every variant generates from the
same models with the same seed; all sets are then evaluated together
(:mod:`nf_dist.pipelines.evaluate`),
and ``ablation.json`` beside the evaluation lists each variant's held-out and all-model ARUC (or
why it produced no fingerprint).
"""

from __future__ import annotations

import itertools
import json
import logging
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from nf_dist.bench.selection import ModelSelection
from nf_dist.distributed.engines import ShardingConfig
from nf_dist.errors import ConfigError, FingerprintError
from nf_dist.fingerprint.fingerprint_set import save_fingerprint_set
from nf_dist.fingerprint.naturalfinger import Checkpointing, NaturalFingerConfig
from nf_dist.pipelines.evaluate import EvaluateConfig, run_evaluate
from nf_dist.pipelines.fingerprint import MOVED_KEYS, OwnerAssets, generate_set
from nf_dist.storage.artifacts import sibling
from nf_dist.storage.uri import join, write_bytes_atomic

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AblationConfig:
    """``nf-dist ablation``: the models (ids of the benchmark at ``models.bench_uri``), the GAN,
    the base NaturalFinger settings, where the gradients are computed, and where the sets and
    the evaluation go. ``validation_models`` are scored apart from the held-out suspects, as in
    ``nf-dist experiment``, so the two report ARUC over the same suspects."""

    MOVED_KEYS: ClassVar[dict[str, str]] = MOVED_KEYS

    gan_uri: str = ""
    models: ModelSelection = field(default_factory=ModelSelection)
    output_uri: str = "runs/ablation"
    sharding: ShardingConfig = field(default_factory=ShardingConfig)
    bootstrap: int = 1000
    validation_models: tuple[str, ...] = ()
    fingerprint: NaturalFingerConfig = field(default_factory=NaturalFingerConfig)


def variants(base: NaturalFingerConfig) -> dict[str, NaturalFingerConfig]:
    """The eight trick combinations (named by the tricks that are on) in Table 3's order (none,
    each alone, each pair, all three), then all three with the paper's D sign."""
    result = {}
    combinations = sorted(
        itertools.product((False, True), repeat=3), key=lambda flags: (sum(flags), flags[::-1])
    )
    for adversarial, transforms, disc in combinations:
        on = [n for n, flag in (("adv", adversarial), ("tf", transforms), ("d", disc)) if flag]
        name = "+".join(on) if on else "none"
        result[name] = replace(
            base, adversarial_labels=adversarial, input_transforms=transforms, discriminator=disc
        )
    result["adv+tf+d(paper sign)"] = replace(base, discriminator_loss="paper")
    return result


def run_ablation(config: AblationConfig, *, progress: bool = False) -> list[dict[str, Any]]:
    """Generate every variant, evaluate the ones that produced fingerprints; returns the rows."""
    if not config.models.bench_uri:
        raise ConfigError("ablation needs models.bench_uri (a built benchmark)")
    config.models.require()
    sets: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    for name, settings in variants(config.fingerprint).items():
        slug = name.replace("+", "_").replace("(", "").replace(")", "").replace(" ", "_")
        uri = join(config.output_uri, f"{slug}.parquet")
        row: dict[str, Any] = {
            "variant": name,
            "adversarial_labels": settings.adversarial_labels,
            "input_transforms": settings.input_transforms,
            "discriminator": settings.discriminator,
            "discriminator_loss": settings.discriminator_loss,
        }
        try:
            fingerprints = generate_set(
                "naturalfinger",
                settings,
                OwnerAssets(config.models, config.gan_uri),
                config.sharding,
                progress=progress,
                checkpointing=Checkpointing(sibling(uri, "progress")),
            )
            save_fingerprint_set(fingerprints, uri)
            row["num_fingerprints"] = len(fingerprints)
            sets[name] = uri
        except FingerprintError as exc:
            logger.warning("ablation variant %s produced no fingerprint: %s", name, exc)
            row["num_fingerprints"] = 0
            row["failure"] = str(exc)
        rows.append(row)
    evaluation_uri = join(config.output_uri, "evaluation")
    if sets:
        metrics = run_evaluate(
            EvaluateConfig(
                bench_uri=config.models.bench_uri,
                fingerprints=sets,
                generation_models=config.models.ids,
                validation_models=config.validation_models,
                output_uri=evaluation_uri,
                backend=config.sharding.backend,
                address=config.sharding.address,
                bootstrap=config.bootstrap,
            )
        )
        for row in rows:
            entry = metrics["methods"].get(row["variant"], {})
            row["heldout_aruc"] = entry.get("heldout", {}).get("aruc")
            row["all_aruc"] = entry.get("all", {}).get("aruc")
    write_bytes_atomic(join(evaluation_uri, "ablation.json"), json.dumps(rows, indent=2).encode())
    return rows
