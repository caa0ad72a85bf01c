"""Benchmark: what the whole FingerBench build would cost on this machine, from a sample of rows.

Usage (from the project root, with nothing else running):
    .venv/bin/python -m benchmarks.bench_build.sample [--profile cpu] [--output runs/bench_sample]

Builds one row per attack (and, for students, one architecture that a recorded build trained in
bf16 and one it trained in fp32) on an embedded Ray, then compares each row's task seconds with
the same row's in a recorded full build (``--recorded``, default the cpu build's record). The
ratio of each group (a derived attack; or a trained-from-its-own-architecture row by the
precision the recorded build used for it) scales every recorded row of that group, and half the
sum (two one-CPU tasks side by side) estimates the full build's wall time here. Recorded build
rows that ran beside other work carry that contention into the estimate (the record says which).
Writes ``benchmarks/bench_build/results/bench_sample_<profile>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from benchmarks.common import machine
from nf_dist import bench
from nf_dist.bench.build import BuildConfig, build_bench

RESULTS = Path(__file__).parent / "results"
#: One row per attack; students in a bf16-recorded (dense) and an fp32-recorded architecture.
SAMPLE = (
    "source",
    "indep-vgg16_bn",
    "ftal",
    "prune-0.5",
    "noise-5",
    "adv-0.5",
    "distill-resnet18",
    "distill-squeezenet",
    "knockoff-resnet18",
)
#: Attacks whose rows train their own architecture (the recorded build's precision followed it).
OWN_ARCHITECTURE = ("scratch", "distill", "knockoff")
#: Architectures the recorded cpu build trained in bf16 (catalog `arch_train` before precision:
#: auto; the rest ran fp32 there too).
RECORDED_BF16_ARCHS = frozenset(
    {
        "resnet18",
        "resnet34",
        "resnet50",
        "seresnet18",
        "vgg16_bn",
        "vgg19_bn",
        "densenet_bc",
        "googlenet",
        "inception_v3",
        "xception",
    }
)
TARGET_WALL_S = 5400


def group_of(row: dict) -> str:
    """The cost group of a manifest or record row."""
    if row["attack"] in OWN_ARCHITECTURE:
        return "own-arch:" + ("bf16" if row["arch"] in RECORDED_BF16_ARCHS else "fp32")
    return row["attack"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--output", default="runs/bench_sample")
    parser.add_argument(
        "--recorded", default=str(RESULTS / "bench_build_cpu_full.json"), help="a full build"
    )
    parser.add_argument("--context", default="nothing else", help="what else ran (verbatim)")
    args = parser.parse_args()
    recorded = json.loads(Path(args.recorded).read_text())
    recorded_s = {r["id"]: r for r in recorded["rows"]}
    started = time.perf_counter()
    build_bench(
        BuildConfig(profile=args.profile, output_uri=args.output, only=SAMPLE, progress=False)
    )
    wall_s = time.perf_counter() - started
    here = {r["id"]: r for r in bench.load(args.output).manifest.to_pylist() if r["id"] in SAMPLE}
    sampled = [
        {
            "id": i,
            "group": group_of(here[i]),
            "precision_here": here[i].get("precision"),
            "seconds_here": here[i]["wall_s"],
            "seconds_recorded": recorded_s[i]["wall_s"],
            "ratio": round(here[i]["wall_s"] / recorded_s[i]["wall_s"], 2),
            "test_accuracy_here": here[i]["test_accuracy"],
            "test_accuracy_recorded": recorded_s[i]["test_accuracy"],
        }
        for i in SAMPLE
    ]
    ratios: dict[str, list[float]] = {}
    for s in sampled:
        ratios.setdefault(s["group"], []).append(s["ratio"])
    ratio = {g: statistics.median(r) for g, r in ratios.items()}
    estimated = {
        r["id"]: r["wall_s"] * ratio[group_of(r)] for r in recorded["rows"] if group_of(r) in ratio
    }
    unestimated = [r["id"] for r in recorded["rows"] if group_of(r) not in ratio]
    task_s = sum(estimated.values())
    by_group = {
        g: round(sum(estimated[r["id"]] for r in recorded["rows"] if group_of(r) == g), 0)
        for g in ratio
    }
    record = {
        "command": " ".join(["python -m benchmarks.bench_build.sample", *sys.argv[1:]]),
        "machine": machine(),
        "also_running": args.context,
        "recorded_build": {"file": args.recorded, "machine": recorded["machine"]},
        "sample_wall_s": round(wall_s, 1),
        "sampled": sampled,
        "ratio_by_group": ratio,
        "estimated_task_s_by_group": by_group,
        "estimated_task_s": round(task_s, 0),
        "estimated_wall_s_2_workers": round(task_s / 2, 0),
        "shrink_needed_for_target": round(task_s / 2 / TARGET_WALL_S, 2),
        "not_estimated": unestimated,
        "target_wall_s": TARGET_WALL_S,
    }
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"bench_sample_{args.profile}"
    stem.with_suffix(".json").write_text(json.dumps(record, indent=2))
    lines = [
        f"# FingerBench `{args.profile}` build cost on this machine, from a sample",
        "",
        f"Command: `{record['command']}`  ",
        f"Machine: {record['machine']}  ",
        f"Also running: {args.context}  ",
        f"Recorded build compared with: `{args.recorded}` (machine: {recorded['machine']})",
        "",
        "| row | group | precision here | s here | s recorded | ratio | acc here | acc recorded |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {s['id']} | {s['group']} | {s['precision_here']} | {s['seconds_here']:.0f} | "
            f"{s['seconds_recorded']:.0f} | {s['ratio']:.2f} | {s['test_accuracy_here']:.4f} | "
            f"{s['test_accuracy_recorded']:.4f} |"
            for s in sampled
        ),
        "",
        f"Estimated full build here: {task_s:.0f} task-seconds, **{task_s / 2:.0f} s** on two "
        f"one-CPU workers (target {TARGET_WALL_S} s: the schedules would have to shrink "
        f"{record['shrink_needed_for_target']}x). By group (task-seconds): "
        + ", ".join(f"{g} {s:.0f}" for g, s in by_group.items())
        + ".",
        "",
    ]
    stem.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
