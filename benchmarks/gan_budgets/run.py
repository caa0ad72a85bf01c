"""Measure GAN training budgets together with what they trade against, in one table.

Usage (from the project root):
    .venv/bin/python -m benchmarks.gan_budgets.run --config benchmarks/gan_budgets/cpu.yaml

For every GAN checkpoint named in ``gans`` (one training run snapshotted at several step counts,
e.g. by ``nf-dist gan train`` with a growing ``gan.steps``), records:

- GAN-test accuracy: the share of G(z, y) the benchmark's source labels y (1,000 samples);
- the Fréchet distance in the source's penultimate features against 2,000 real test images
  (:mod:`nf_dist.models.gan.quality`; ranks these GANs, not comparable to Inception-FID);
- class coverage of NaturalFinger's initial selection (distinct y_orig among the selected);
- fingerprint survival and the validation ARUC of one NaturalFinger run with the config's
  settings (scored like :mod:`benchmarks.archive.nf_choices.run`, on the validation suspects only);
- the stealth detector's rate on that run's fingerprints (one detector, seed 0).

Writes ``benchmarks/gan_budgets/results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.archive.nf_choices.run import ChoicesConfig, bench_uri, run_one, validation_ids
from benchmarks.common import machine
from nf_dist.bench import load
from nf_dist.config import load_config, to_dict
from nf_dist.data import DataConfig, load_splits
from nf_dist.fingerprint.fingerprint_set import load_fingerprint_set
from nf_dist.fingerprint.stealth import DetectorConfig, detection_rate, train_detector
from nf_dist.models.gan import gan_test_accuracy, load_gan
from nf_dist.models.gan.quality import classifier_fd
from nf_dist.pipelines.tune import ValidationScorer

RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True)
class BudgetsConfig:
    """The GAN snapshots (label -> checkpoint stem) and the NaturalFinger run to score them."""

    name: str = "gan_budgets"
    gans: dict[str, str] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    choices: ChoicesConfig = field(default_factory=ChoicesConfig)
    detector: DetectorConfig = field(default_factory=lambda: DetectorConfig(epochs=5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    config = load_config(BudgetsConfig, args.config, args.overrides)
    splits = load_splits(config.data, with_query=False)
    bench = load(bench_uri(config.choices))
    source = bench.model(config.choices.models.positives[0])
    # The detector is trained against adversarial examples of the source, as in the experiment.
    detector = train_detector(splits.finetune, source, config.detector)
    scorer = ValidationScorer(bench_uri(config.choices), validation_ids(config.choices))
    rows: list[dict[str, Any]] = []
    for label, uri in config.gans.items():
        generator, _, meta = load_gan(uri)
        started = time.perf_counter()
        quality = {
            "gan": label,
            "checkpoint": uri,
            "steps": meta.get("steps_done"),
            "train_seconds": round(float(meta.get("seconds_total", 0.0)), 1),
            "gan_test_accuracy": gan_test_accuracy(generator, source),
            "classifier_fd": classifier_fd(generator, source, splits.test.images),
        }
        choices = replace(config.choices, gan_uri=uri, name=f"{config.name}-{label}")
        run = run_one(choices, next(iter(choices.variants)), choices.seeds[0], scorer)
        fingerprints_uri = (
            f"{choices.work_dir}/{choices.name}/{run['variant']}-seed{run['seed']}.parquet"
        )
        detected = None
        if run.get("num_fingerprints"):
            detected = detection_rate(detector, load_fingerprint_set(fingerprints_uri).images)
        rows.append(
            {
                **quality,
                **{k: v for k, v in run.items() if k not in ("settings",)},
                "detection_rate": detected,
                "measure_s": round(time.perf_counter() - started, 1),
            }
        )
        logging.info("%s", rows[-1])
    clean_rate = detection_rate(
        detector, splits.test.images[np.random.default_rng(0).choice(len(splits.test), 1000)]
    )
    record = {
        "command": " ".join(["python -m benchmarks.gan_budgets.run", *sys.argv[1:]]),
        "machine": machine(),
        "config": to_dict(config),
        "clean_false_alarm_rate": clean_rate,
        "rows": rows,
    }
    (RESULTS / f"{config.name}.json").write_text(json.dumps(record, indent=2))
    lines = [
        f"# GAN budgets and what they trade against: `{config.name}`",
        "",
        f"Command: `{record['command']}`  ",
        f"Machine: {record['machine']}  ",
        "GAN-test and FD with the benchmark's source; survival and ARUC of one NaturalFinger "
        f"run per GAN on {len(scorer.models)} validation suspects; detector (seed 0) false "
        f"alarms on clean test images: {clean_rate:.3f}.",
        "",
        "| GAN | steps | train s | GAN-test | FD (source features) | classes covered | "
        "kept / optimised | val ARUC | val ARUC@100 | detection rate |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rate = "-" if r["detection_rate"] is None else f"{r['detection_rate']:.2f}"
        lines.append(
            f"| {r['gan']} | {r['steps']} | {r['train_seconds']:.0f} | "
            f"{r['gan_test_accuracy']:.3f} | {r['classifier_fd']:.1f} | "
            f"{r.get('classes_covered', 0)} | {r.get('num_fingerprints', 0)} / "
            f"{r.get('num_selected', '-')} | {r.get('val_aruc', 0):.3f} | "
            f"{r.get('val_aruc_at_100', 0):.3f} | {rate} |"
        )
    (RESULTS / f"{config.name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
