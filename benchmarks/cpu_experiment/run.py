"""Record the paper's experiments on the `cpu` FingerBench built on this machine.

    python -m benchmarks.cpu_experiment.run [--run]

With ``--run`` it first runs, in order, ``nf-dist experiment``, ``nf-dist ablation`` and
``nf-dist tune`` with ``jobs/configs/cpu_{experiment,ablation,tune}.yaml`` (each resumes what an
earlier run finished). It then copies the reports with their plots and the Parquet tables they
were drawn from into ``benchmarks/cpu_experiment/results/`` and writes ``summary.json`` with
the machine, the commands, the wall times and the headline numbers. A command whose outputs are
not on this machine keeps its earlier copy and is listed in ``not_rerun``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

from benchmarks.common import machine
from nf_dist.pipelines.report import write_report

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).parent / "results"
COMMANDS = {
    "experiment": ["experiment", "--config", "jobs/configs/cpu_experiment.yaml"],
    "ablation": ["ablation", "--config", "jobs/configs/cpu_ablation.yaml"],
    "tune": ["tune", "--config", "jobs/configs/cpu_tune.yaml"],
}
EXPERIMENT = ROOT / "runs" / "experiments" / "cpu"
ABLATION = ROOT / "runs" / "experiments" / "cpu_ablation"
TUNE = ROOT / "runs" / "tune" / "cpu-naturalfinger-results"


def run_all() -> dict[str, float]:
    wall = {}
    for name, args in COMMANDS.items():
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "nf_dist.cli", *args, "--no-progress"], check=True)
        wall[name] = round(time.perf_counter() - started, 1)
    return wall


def _copy(source: Path, target: Path, patterns: tuple[str, ...]) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for pattern in patterns:
        for file in source.glob(pattern):
            shutil.copy2(file, target / file.name)


def collect(wall: dict[str, float]) -> dict[str, Any]:
    evaluation = EXPERIMENT / "evaluation"
    _copy(EXPERIMENT / "report", OUT / "experiment", ("*.md", "*.png"))
    _copy(evaluation, OUT / "experiment", ("*.parquet", "*.json"))
    ablation_eval = ABLATION / "evaluation"
    # A command not run on this machine keeps its earlier copy here (and says so in summary.json).
    if ablation_eval.exists():
        write_report(str(ablation_eval), str(OUT / "ablation"))
        _copy(ablation_eval, OUT / "ablation", ("*.parquet", "*.json"))
    if TUNE.exists():
        _copy(TUNE, OUT / "tune", ("*.md", "*.png", "*.parquet", "*.json", "*.yaml"))
    previous = (
        json.loads((OUT / "summary.json").read_text()) if (OUT / "summary.json").exists() else {}
    )
    metrics = json.loads((evaluation / "metrics.json").read_text())
    summary: dict[str, Any] = {
        "machine": machine(),
        "commands": {k: "nf-dist " + " ".join(v) for k, v in COMMANDS.items()},
        "wall_s_of_this_invocation": wall,
        "experiment_wall_s": json.loads((evaluation / "experiment.json").read_text())["wall_s"],
        "sets": json.loads((evaluation / "sets.json").read_text()),
        "heldout_aruc": {m: e["heldout"]["aruc"] for m, e in metrics["methods"].items()},
        "all_aruc": {m: e["all"]["aruc"] for m, e in metrics["methods"].items()},
        "detection_rate": {
            k: v["mean"]
            for k, v in json.loads((evaluation / "stealth.json").read_text())[
                "detection_rate"
            ].items()
        },
        "ablation": (
            json.loads((ablation_eval / "ablation.json").read_text())
            if ablation_eval.exists()
            else previous.get("ablation")
        ),
        "not_rerun": [
            name
            for name, folder in (("ablation", ablation_eval), ("tune", TUNE))
            if not folder.exists()
        ],
    }
    summary["heldout_rates_by_group"] = rates_by_group(evaluation / "rates.parquet")
    summary["naturalfinger_sets"] = naturalfinger_sets(summary["sets"])
    summary["wall_clock_s_from_time_logs"] = {
        **previous.get("wall_clock_s_from_time_logs", {}),
        **_time_logs(),
    }
    if (TUNE / "summary.json").exists():
        tune = json.loads((TUNE / "summary.json").read_text())
        summary["tune"] = {k: tune[k] for k in ("best_params", "test", "wall_s") if k in tune}
    elif "tune" in previous:
        summary["tune"] = previous["tune"]
    (OUT / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def naturalfinger_sets(sets: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per NaturalFinger set: latents optimised, how many passed the screen, generation seconds
    (the set's own record; a re-screen counts only itself) and the classes its labels cover."""
    from nf_dist.fingerprint.fingerprint_set import load_fingerprint_set

    info = {}
    for name, record in sets.items():
        if record.get("method") != "naturalfinger" or record.get("failure"):
            continue
        fingerprints = load_fingerprint_set(str(EXPERIMENT / "sets" / f"{name}.parquet"))
        made = fingerprints.info
        labels = [int(y) for y in fingerprints.y_orig]
        info[name] = {
            "num_selected": made.get("num_selected"),
            "num_passed_screening": made.get("num_passed_screening"),
            "seconds": round(made.get("seconds", 0.0), 1),
            "rescreen_of": record.get("rescreen_of"),
            # coverage: how many of CIFAR-10's classes the kept images' y_orig spans
            "y_orig_classes": len(set(labels)),
            "largest_y_orig_share": round(max(map(labels.count, set(labels))) / len(labels), 3),
        }
    return info


def rates_by_group(
    rates_uri: Path | str, suspects: Collection[str] | None = None
) -> dict[str, dict[str, dict[str, float]]]:
    """Per method, the held-out suspects' (or ``suspects``') mean matching rate by kind of
    suspect: stolen by distillation or Knockoff, or derived otherwise (fine-tuning, pruning,
    noise, adversarial training); independent from scratch, distilled, Knockoff, or mirrors of
    the derived ones."""
    import pyarrow.parquet as pq

    groups: dict[str, dict[str, list[float]]] = {}
    for row in pq.read_table(rates_uri).to_pylist():
        if (row["suspect"] not in suspects) if suspects is not None else row["use"] != "heldout":
            continue
        kind = {"distill": "distilled", "knockoff": "knockoff", "scratch": "scratch"}.get(
            row["attack"], "derived"
        )
        group = f"{row['role']} {kind}"
        groups.setdefault(row["method"], {}).setdefault(group, []).append(row["rate"])
    return {
        method: {
            group: {"suspects": len(rates), "mean_rate": round(sum(rates) / len(rates), 4)}
            for group, rates in sorted(by_group.items())
        }
        for method, by_group in sorted(groups.items())
    }


def _time_logs() -> dict[str, float]:
    """Wall clock of each command as `/usr/bin/time -v` logged it in
    ``runs/experiments/cpu_<name>.log`` (how the recorded runs were made), where present."""
    import re

    wall = {}
    for name in COMMANDS:
        log = ROOT / "runs" / "experiments" / f"cpu_{name}.log"
        found = (
            re.search(r"Elapsed \(wall clock\) time .*?: ([\d:.]+)", log.read_text())
            if log.exists()
            else None
        )
        if found:
            parts = [float(p) for p in found.group(1).split(":")]
            wall[name] = round(sum(p * 60**i for i, p in enumerate(reversed(parts))), 1)
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="store_true", help="run the three commands first")
    args = parser.parse_args()
    wall = run_all() if args.run else {}
    print(json.dumps(collect(wall), indent=2)[:4000])


if __name__ == "__main__":
    main()
