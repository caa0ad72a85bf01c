"""Measure NaturalFinger settings on the validation suspects of a built benchmark.

Usage (from the project root):
    .venv/bin/python -m benchmarks.archive.nf_choices.run \\
        --config benchmarks/archive/nf_choices/cpu.yaml

The config names a benchmark, a GAN, the generation models, a ``base`` NaturalFinger config, the
``variants`` (each a set of fields changed from ``base``, and optionally other ``positives`` or
``negatives``) and the ``seeds``. Every variant runs
once per seed; each run is scored on the validation suspects of the split ``nf-dist tune`` makes
(``validation_fraction``, ``split_seed``; the generation models excluded), never on test suspects.
Results go to ``benchmarks/archive/nf_choices/results/<name>.{jsonl,json,md}``: one line per run
as it finishes (a
re-run skips runs already there, so a killed sweep resumes), then the per-variant means.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import machine
from nf_dist.bench import load
from nf_dist.bench.selection import ModelSelection
from nf_dist.config import from_dict, load_config, to_dict
from nf_dist.distributed.engines import ShardingConfig
from nf_dist.errors import ConfigError, FingerprintError
from nf_dist.fingerprint.fingerprint_set import FingerprintSet, load_fingerprint_set
from nf_dist.fingerprint.naturalfinger import NaturalFingerConfig
from nf_dist.fingerprint.naturalfinger.config import SCREENING_FIELDS
from nf_dist.fingerprint.naturalfinger.progress import copy_progress
from nf_dist.pipelines.fingerprint import FingerprintJobConfig, run_fingerprint
from nf_dist.pipelines.tune import TuneJobConfig, ValidationScorer, three_way_split
from nf_dist.storage.artifacts import sibling

RESULTS = Path(__file__).parent / "results"
BUDGET = 100


@dataclass(frozen=True)
class ChoicesConfig:
    """What to measure (see the module docstring)."""

    name: str = "nf_choices"
    gan_uri: str = ""
    models: ModelSelection = field(
        default_factory=lambda: ModelSelection(bench_uri="runs/bench/cpu")
    )
    validation_fraction: float = 0.3
    split_seed: int = 0
    validation_models: tuple[str, ...] = ()
    base: NaturalFingerConfig = field(default_factory=NaturalFingerConfig)
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    sharding: ShardingConfig = field(default_factory=ShardingConfig)
    work_dir: str = "runs/nf_choices"


def validation_ids(config: ChoicesConfig) -> tuple[str, ...]:
    """The validation suspects of ``nf-dist tune``'s three-way split, with every model any
    variant generates from counted as a generation model (so all variants share one split);
    or ``validation_models`` when the config names them."""
    positives = dict.fromkeys(config.models.positives)
    negatives = dict.fromkeys(config.models.negatives)
    for changes in config.variants.values():
        positives.update(dict.fromkeys(changes.get("positives", ())))
        negatives.update(dict.fromkeys(changes.get("negatives", ())))
    tune = TuneJobConfig(
        gan_uri=config.gan_uri,
        models=replace(config.models, positives=tuple(positives), negatives=tuple(negatives)),
        validation_fraction=config.validation_fraction,
        split_seed=config.split_seed,
        validation_models=config.validation_models,
    )
    return three_way_split(load(bench_uri(config)).manifest.to_pylist(), tune).validation


def bench_uri(config: ChoicesConfig) -> str:
    if not config.models.bench_uri:
        raise ConfigError("models.bench_uri: name the built benchmark the variants are scored on")
    return config.models.bench_uri


def score(scorer: ValidationScorer, fingerprints: FingerprintSet) -> dict[str, Any]:
    """Validation metrics of the whole set and of its first BUDGET fingerprints."""
    full = scorer.score(fingerprints)
    head = FingerprintSet(
        fingerprints.images[:BUDGET], fingerprints.y_orig[:BUDGET], fingerprints.y_adv[:BUDGET]
    )
    at_budget = scorer.score(head)
    return {
        **full,
        f"val_aruc_at_{BUDGET}": at_budget["val_aruc"],
        "classes_covered": int(len(np.unique(fingerprints.y_orig))),
    }


def job_for(config: ChoicesConfig, name: str, seed: int) -> FingerprintJobConfig:
    """The fingerprint job of one variant and seed."""
    changes = dict(config.variants[name])
    changes.pop("rescreen_of", None)
    models = replace(
        config.models,
        positives=tuple(changes.pop("positives", config.models.positives)),
        negatives=tuple(changes.pop("negatives", config.models.negatives)),
    )
    settings = replace(
        from_dict(NaturalFingerConfig, {**to_dict(config.base), **changes}), seed=seed
    )
    return FingerprintJobConfig(
        output_uri=f"{config.work_dir}/{config.name}/{name}-seed{seed}.parquet",
        gan_uri=config.gan_uri,
        models=models,
        sharding=config.sharding,
        fingerprint=settings,
    )


def generate(config: ChoicesConfig, name: str, seed: int) -> FingerprintSet:
    """Generate (or resume) one run; its first complete generation's wall time is kept in a
    ``.seconds`` file beside the set, so scoring later does not mistake a re-screen for it.

    A variant with ``rescreen_of: OTHER`` differs from OTHER only in screening fields: it
    re-screens OTHER's finished optimisation (its time counts OTHER's)."""
    job = job_for(config, name, seed)
    seconds_file = Path(job.output_uri).with_suffix(".seconds")
    made = finished_set(job)
    if made is not None:
        return made
    parent_seconds = 0.0
    parent = config.variants[name].get("rescreen_of")
    if parent is not None:  # the same optimisation screened otherwise: start from its end
        generate(config, parent, seed)
        parent_uri = job_for(config, parent, seed).output_uri
        parent_seconds = float(Path(parent_uri).with_suffix(".seconds").read_text())
        copy_progress(sibling(parent_uri, "progress"), sibling(job.output_uri, "progress"))
    started = time.perf_counter()
    fingerprints = run_fingerprint(job, progress=False)
    if not seconds_file.exists():
        seconds_file.write_text(f"{parent_seconds + time.perf_counter() - started:.1f}\n")
    return fingerprints


def finished_set(job: FingerprintJobConfig) -> FingerprintSet | None:
    """The set a complete earlier run of this job made, if its optimisation had these settings
    (re-running would only re-draw the candidates and re-screen the same latents)."""
    uri = Path(job.output_uri)
    progress = Path(sibling(job.output_uri, "progress") + ".json")
    if not (uri.exists() and uri.with_suffix(".seconds").exists() and progress.exists()):
        return None
    recorded = json.loads(progress.read_text()).get("config", {})
    wanted = json.loads(json.dumps(to_dict(job.fingerprint)))
    if any(recorded.get(k) != v for k, v in wanted.items() if k not in SCREENING_FIELDS):
        return None
    return load_fingerprint_set(job.output_uri)


def run_one(
    config: ChoicesConfig, name: str, seed: int, scorer: ValidationScorer
) -> dict[str, Any]:
    try:
        fingerprints = generate(config, name, seed)
    except FingerprintError as exc:
        return {"variant": name, "seed": seed, "failure": str(exc), "num_fingerprints": 0}
    seconds_file = Path(job_for(config, name, seed).output_uri).with_suffix(".seconds")
    return {
        "variant": name,
        "seed": seed,
        "settings": config.variants[name],
        "wall_s": float(seconds_file.read_text()),
        "num_selected": fingerprints.info.get("num_selected"),
        "num_passed_screening": fingerprints.info.get("num_passed_screening"),
        **score(scorer, fingerprints),
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    keys = (
        "num_fingerprints",
        "num_passed_screening",
        "val_aruc",
        f"val_aruc_at_{BUDGET}",
        "val_roc_auc",
        "val_tpr_at_1pct_fpr",
        "classes_covered",
        "wall_s",
    )
    out: dict[str, dict[str, float]] = {}
    for variant in dict.fromkeys(r["variant"] for r in rows):
        group = [r for r in rows if r["variant"] == variant]
        out[variant] = {
            k: round(statistics.mean(float(r.get(k, 0.0) or 0.0) for r in group), 4) for k in keys
        }
        out[variant]["runs"] = len(group)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument(
        "--generate-only",
        action="store_true",
        help="generate every run's set (resumable) without scoring, e.g. while the "
        "validation suspects are still being built",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    config = load_config(ChoicesConfig, args.config, args.overrides)
    if args.generate_only:
        for name in config.variants:
            for seed in config.seeds:
                try:
                    generate(config, name, seed)
                except FingerprintError as exc:
                    logging.warning("%s seed %d: %s", name, seed, exc)
        return
    lines_uri = RESULTS / f"{config.name}.jsonl"
    rows = (
        [json.loads(line) for line in lines_uri.read_text().splitlines()]
        if (lines_uri.exists())
        else []
    )
    done = {(r["variant"], r["seed"]) for r in rows}
    validation = validation_ids(config)
    scorer = ValidationScorer(bench_uri(config), validation)
    for name in config.variants:
        for seed in config.seeds:
            if (name, seed) in done:
                continue
            row = run_one(config, name, seed, scorer)
            logging.info("%s", row)
            rows.append(row)
            with lines_uri.open("a") as sink:
                sink.write(json.dumps(row) + "\n")
    summary = summarise(rows)
    record = {
        "command": " ".join(["python -m benchmarks.archive.nf_choices.run", *sys.argv[1:]]),
        "machine": machine(),
        "config": to_dict(config),
        "validation_suspects": list(validation),
        "summary": summary,
    }
    (RESULTS / f"{config.name}.json").write_text(json.dumps(record, indent=2))
    header = "| variant | settings | fingerprints | val ARUC | val ARUC@100 | val ROC AUC | "
    lines = [
        f"# NaturalFinger settings on validation suspects: `{config.name}`",
        "",
        f"Command: `{record['command']}`  ",
        f"Machine: {record['machine']}  ",
        f"{len(validation)} validation suspects (tune's split, seed {config.split_seed}); "
        f"seeds {list(config.seeds)}; base settings and models: `{args.config}`. "
        "Means over seeds.",
        "",
        header + "TPR@1%FPR | classes | s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for variant, m in summary.items():
        lines.append(
            f"| {variant} | `{json.dumps(config.variants[variant])}` | "
            f"{m['num_fingerprints']:.1f} | {m['val_aruc']:.3f} | "
            f"{m[f'val_aruc_at_{BUDGET}']:.3f} | {m['val_roc_auc']:.3f} | "
            f"{m['val_tpr_at_1pct_fpr']:.2f} | {m['classes_covered']:.1f} | {m['wall_s']:.0f} |"
        )
    (RESULTS / f"{config.name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
