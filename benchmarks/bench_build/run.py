"""Benchmark: build a FingerBench profile end to end on this machine (default: ``cpu``).

Usage (from the project root):
    .venv/bin/python -m benchmarks.bench_build.run [--profile cpu] [--output runs/bench/cpu]

Runs ``nf-dist bench build`` on an embedded local Ray and records wall time, seconds and test
accuracy (mean, min) per attack and role, the source's test accuracy, every model's row with its
accuracy floor (``rows``) and the models below their floor in
``benchmarks/bench_build/results/bench_build_<profile>.{json,md}``. A re-run resumes; the recorded
wall time is
then that of the resumed part only (``resumed_models`` says how many were already there).
``--no-build`` records the benchmark as it stands without building: the rows still missing and
an estimate of their task seconds (see :func:`estimate_missing`).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

from benchmarks.common import machine
from nf_dist import bench
from nf_dist.bench.build import BuildConfig, BuildReport, build_bench
from nf_dist.bench.catalog import load_profile
from nf_dist.bench.floors import check_floors

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--output", help="output URI (default runs/bench/<profile>)")
    parser.add_argument(
        "--context",
        default="nothing else",
        help="what else ran on the machine during the build (recorded verbatim)",
    )
    parser.add_argument(
        "--no-build",
        action="store_true",
        help="record what is built and estimate what is missing, without building",
    )
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    output = args.output or f"runs/bench/{args.profile}"
    profile = load_profile(args.profile)
    started = time.perf_counter()
    if args.no_build:
        report = BuildReport()
    else:
        report = build_bench(BuildConfig(profile=args.profile, output_uri=output, progress=False))
    wall_s = time.perf_counter() - started
    rows = bench.load(output).manifest.to_pylist()
    if args.no_build:
        report.skipped = [r["id"] for r in rows]
        report.floors = check_floors(rows, profile.floors, profile.floor_exempt)
    built_ids = {r["id"] for r in rows}
    missing = [m for m in profile.models if m.id not in built_ids]
    missing_seconds = estimate_missing(rows, missing)
    by_attack: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_attack[f"{row['attack']} ({row['role']})"].append(row)
    floors = {check.id: check for check in report.floors}
    attacks = {
        name: {
            "models": len(group),
            "below_floor": sum(floors[r["id"]].below for r in group if r["id"] in floors),
            "seconds_total": round(sum(r["wall_s"] for r in group), 1),
            "seconds_mean": round(statistics.mean(r["wall_s"] for r in group), 1),
            "test_accuracy_mean": round(statistics.mean(r["test_accuracy"] for r in group), 4),
            "test_accuracy_min": round(min(r["test_accuracy"] for r in group), 4),
        }
        for name, group in sorted(by_attack.items())
    }
    source = next(r for r in rows if r["id"] == "source")
    record = {
        "command": " ".join(["python -m benchmarks.bench_build.run", *sys.argv[1:]]),
        "machine": machine(),
        "profile": args.profile,
        "profile_description": profile.description,
        "wall_s": round(wall_s, 1),
        "models": len(rows),
        "built_now": len(report.built),
        "resumed_models": len(report.skipped),
        "retries": report.retries,
        "task_seconds_total": round(sum(r["wall_s"] for r in rows), 1),
        # With two 1-CPU tasks side by side, the whole build takes at least half the task
        # seconds: the figure to hold against the target when the build was resumed.
        "wall_s_lower_bound_2_workers": round(sum(r["wall_s"] for r in rows) / 2, 1),
        "also_running": args.context,
        "missing": [
            {"id": m.id, "attack": m.attack, "arch": m.arch, "estimated_s": missing_seconds[m.id]}
            for m in missing
        ],
        "missing_estimated_task_s": round(sum(missing_seconds.values()), 1),
        "source": {
            "arch": source["arch"],
            "width": source["width"],
            "test_accuracy": source["test_accuracy"],
            "recipe": json.loads(source["row"])["train"],
        },
        "per_attack": attacks,
        "floors": asdict(profile.floors),
        "below_floor": [asdict(c) for c in report.below_floor],
        "rows": [
            {
                "id": r["id"],
                "role": r["role"],
                "attack": r["attack"],
                "arch": r["arch"],
                "test_accuracy": r["test_accuracy"],
                "floor": None if r["id"] not in floors else floors[r["id"]].floor,
                "floor_exempt": r["id"] in profile.floor_exempt,
                "wall_s": r["wall_s"],
            }
            for r in rows
        ],
        "targets": {"wall_s_max": 5400, "models": 154, "below_floor": 0},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"bench_build_{args.profile}.json").write_text(json.dumps(record, indent=2))
    lines = [
        f"# FingerBench build, profile `{args.profile}`",
        "",
        f"Command: `{record['command']}`  ",
        f"Machine: {record['machine']}  ",
        f"{profile.description}",
        "",
        (
            f"- not built by this command (--no-build): {len(rows)} models already there; "
            "target: 154 models in at most 5400 s"
            if args.no_build
            else f"- wall time: {wall_s:.0f} s for {len(report.built)} models built now "
            f"({len(report.skipped)} already there); target: 154 models in at most 5400 s"
        ),
        f"- sum of task seconds: {record['task_seconds_total']:.0f} s (2 tasks run side by side, "
        f"so the whole build takes at least {record['wall_s_lower_bound_2_workers']:.0f} s)",
        f"- also running on the machine: {args.context}",
        f"- not built: {len(missing)} of {len(profile.models)} models, estimated "
        f"{record['missing_estimated_task_s']:.0f} task seconds (at least "
        f"{record['missing_estimated_task_s'] / 2:.0f} s more on 2 workers; the JSON's "
        "`missing` lists them)",
        f"- source ({source['arch']}, width {source['width']}): test accuracy "
        f"{source['test_accuracy']:.4f} (target >= 0.70)",
        f"- retries: {report.retries}",
        f"- accuracy floors ({profile.floors}): {len(report.below_floor)} model(s) below "
        f"{[c.id for c in report.below_floor]}; exempt: {profile.floor_exempt or 'none'}",
        "",
        "| attack (role) | models | seconds (total) | seconds (mean) | test acc (mean) | "
        "test acc (min) | below floor |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, a in attacks.items():
        lines.append(
            f"| {name} | {a['models']} | {a['seconds_total']} | {a['seconds_mean']} | "
            f"{a['test_accuracy_mean']:.4f} | {a['test_accuracy_min']:.4f} | "
            f"{a['below_floor']} |"
        )
    lines += ["", "Every model (the JSON's `rows`):", ""]
    lines += [
        "| id | role | attack | arch | test acc | floor | s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in record["rows"]:
        floor = (
            "exempt" if r["floor_exempt"] else ("-" if r["floor"] is None else f"{r['floor']:.3f}")
        )
        lines.append(
            f"| {r['id']} | {r['role']} | {r['attack']} | {r['arch']} | "
            f"{r['test_accuracy']:.4f} | {floor} | {r['wall_s']:.0f} |"
        )
    (RESULTS / f"bench_build_{args.profile}.md").write_text("\n".join(lines) + "\n")
    print(json.dumps({k: record[k] for k in ("wall_s", "models", "source")}, indent=2))


def estimate_missing(rows: list[dict], missing: list) -> dict[str, float]:
    """Task seconds of each missing model, from built ones: a built row of the same architecture
    and attack (e.g. the mirror of a built student), else the architecture's from-scratch row
    times the median student/scratch ratio of architectures that have both (students train
    longer than their architecture's scratch model and also run a teacher)."""
    by_key: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in rows:
        by_key[(r["arch"], r["attack"])].append(r["wall_s"])
    mean = {k: statistics.mean(v) for k, v in by_key.items()}
    ratios = [
        mean[(arch, attack)] / mean[(arch, "scratch")]
        for arch, attack in mean
        if attack in ("distill", "knockoff") and (arch, "scratch") in mean
    ]
    ratio = statistics.median(ratios) if ratios else 1.0
    overall = statistics.mean(r["wall_s"] for r in rows) if rows else 0.0
    estimate = {}
    for model in missing:
        if (model.arch, model.attack) in mean:
            estimate[model.id] = round(mean[(model.arch, model.attack)], 1)
        elif (model.arch, "scratch") in mean:
            estimate[model.id] = round(mean[(model.arch, "scratch")] * ratio, 1)
        else:
            estimate[model.id] = round(overall, 1)
    return estimate


if __name__ == "__main__":
    main()
