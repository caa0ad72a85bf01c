"""How much of the source each model of a built benchmark carries: test-set agreement with the
source, and agreement on the source's mistakes (the share of test images the source gets wrong
on which the model gives the source's wrong label: lineage, where plain agreement is mostly
both being right).

Usage (from the project root):
    .venv/bin/python -m benchmarks.quality_trend.agreement --bench runs/bench/cpu40 --name cpu40

Writes ``results/agreement_<name>.{json,md}`` with the command and the machine: per model its
group (students, independents, surrogates, references, ...), test accuracy and both agreements,
and each group's mean.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import machine
from nf_dist.bench import load
from nf_dist.data import DataConfig, load_splits
from nf_dist.models.inference import predict

RESULTS = Path(__file__).parent / "results"
STUDENT_ATTACKS = ("distill", "knockoff")


def group_of(row: dict[str, Any]) -> str | None:
    """The comparison group of a manifest row (None: not compared)."""
    students = row["attack"] in STUDENT_ATTACKS
    if row.get("section") == "ensemble":
        return "surrogates" if row["role"] == "positive" else "references"
    if row["role"] == "positive":
        return "students" if students else None
    if row["attack"] == "scratch":
        return "mirror" if row.get("mirror_of") else "independents"
    return "independent students" if students else None


def agreements(reference: np.ndarray, labels: np.ndarray, answers: np.ndarray) -> dict[str, float]:
    """Test-set agreement with the reference, and agreement on the reference's mistakes."""
    wrong = reference != labels
    return {
        "agreement": float((answers == reference).mean()),
        "mistake_agreement": float((answers[wrong] == reference[wrong]).mean()),
    }


def model_agreements(bench_uri: str) -> tuple[float, dict[str, dict[str, Any]]]:
    """The source's test accuracy, and per compared model (:func:`group_of`) its group, test
    accuracy and both :func:`agreements` with the source on the CIFAR-10 test set."""
    bench = load(bench_uri)
    test = load_splits(DataConfig(), with_query=False).test
    reference = predict(bench.model("source"), test.images)
    labels = np.asarray(test.labels)
    models: dict[str, dict[str, Any]] = {}
    for row in bench.rows(section=None):
        group = group_of(row)
        if group is None or row["id"] == "source":
            continue
        answers = predict(bench.model(row["id"]), test.images)
        models[row["id"]] = {
            "group": group,
            "test_accuracy": row["test_accuracy"],
            **agreements(reference, labels, answers),
        }
    return float(bench.row("source")["test_accuracy"]), models


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", required=True)
    parser.add_argument("--name", required=True)
    args = parser.parse_args(argv)
    source_accuracy, models = model_agreements(args.bench)
    groups: dict[str, dict[str, float]] = {}
    for name in sorted({m["group"] for m in models.values()}):
        members = [m for m in models.values() if m["group"] == name]
        groups[name] = {
            key: float(np.mean([m[key] for m in members]))
            for key in ("test_accuracy", "agreement", "mistake_agreement")
        } | {"models": len(members)}
    record = {
        "command": "python -m benchmarks.quality_trend.agreement "
        + shlex.join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "bench": args.bench,
        "source_test_accuracy": source_accuracy,
        "groups": groups,
        "models": models,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"agreement_{args.name}.json").write_text(json.dumps(record, indent=2))
    lines = [
        f"# How much of the source each group carries: {args.name}",
        "",
        f"Command: `{record['command']}`",
        f"Machine: {record['machine']['cpu_model']}",
        f"Source test accuracy: {record['source_test_accuracy']:.3f}",
        "",
        "| group | models | test accuracy | agreement with the source | on its mistakes |",
        "|---|---|---|---|---|",
    ]
    for name, g in groups.items():
        lines.append(
            f"| {name} | {g['models']} | {g['test_accuracy']:.3f} | {g['agreement']:.3f} | "
            f"{g['mistake_agreement']:.3f} |"
        )
    (RESULTS / f"agreement_{args.name}.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
