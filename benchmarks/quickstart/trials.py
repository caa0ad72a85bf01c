"""Benchmark: quickstart settings tried over fingerprint seeds on one cached zoo.

Usage (from the project root):
    .venv/bin/python -m benchmarks.quickstart.trials --zoo runs/qs_base --out NAME \\
        --trial "LABEL=[--config FILE] [--set KEY=VALUE ...]" ... [--seeds 0 1 2]
    .venv/bin/python -m benchmarks.quickstart.trials --zoo runs/qs_base --out NAME \\
        --collect "LABEL=DIR,DIR,DIR" ...

Each trial and seed runs ``nf-dist quickstart`` in a fresh folder that starts with a copy of the
zoo's built models (a model whose row changed, e.g. its ``use``, is rebuilt there), so the trials
differ only in their settings and seed; ``--collect`` records runs already made that way (each
folder's ``config.yaml`` holds the command it ran). Results go to
``benchmarks/quickstart/results/<NAME>.json`` and ``.md``: per run the held-out ARUC, fingerprints
and held-out rates with the command; per trial the means. The quickstart has no validation split:
these are held-out numbers on 4 + 4 suspects (see the record's ``protocol``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import machine
from nf_dist.scoring import summarize

RESULTS = Path(__file__).parent / "results"
ZOO_FILES = ("models", "manifest.parquet", "profile.json", "rows")


def run_trial(
    zoo: Path, folder: Path, arguments: list[str], subset: str | None = None
) -> dict[str, Any]:
    """One quickstart run in ``folder`` on a copy of ``zoo``'s models."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name in ZOO_FILES:
        source = zoo / name
        if source.is_dir():
            shutil.copytree(source, folder / name)
        elif source.exists():
            shutil.copy(source, folder / name)
    command = [
        sys.executable, "-m", "nf_dist.cli", "quickstart", "--no-progress",
        *arguments, "--set", f"output_dir={folder}",
    ]  # fmt: skip
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return collected(folder, subset)


def collected(folder: Path, subset: str | None = None) -> dict[str, Any]:
    """A finished run's numbers and the command it recorded; with ``subset`` (a glob over
    model ids) also the metrics of the held-out suspects it matches."""
    result = json.loads((folder / "result.json").read_text())
    record = yaml.safe_load((folder / "config.yaml").read_text())
    extra = {}
    if subset is not None:
        chosen = [r for r in result["rows"] if r["use"] == "heldout" and fnmatch(r["id"], subset)]
        extra["subset"] = {
            "glob": subset,
            "ids": [r["id"] for r in chosen],
            **summarize(
                [r["matching_rate"] for r in chosen if r["role"] == "positive"],
                [r["matching_rate"] for r in chosen if r["role"] == "negative"],
            ),
        }
    return {
        **extra,
        "folder": str(folder),
        "command": f"{program(record['argv'][0])} {shlex.join(record['argv'][1:])}",
        "seed": record["config"]["fingerprint"]["seed"],
        "num_fingerprints": result["num_fingerprints"],
        "heldout_aruc": round(result["heldout"]["aruc"], 4),
        "fingerprint_seconds": result["stage_seconds"]["fingerprint"],
        "heldout_rates": {
            r["id"]: round(r["matching_rate"], 3) for r in result["rows"] if r["use"] == "heldout"
        },
    }


def program(argv0: str) -> str:
    """How a recorded ``argv[0]`` is typed: the CLI, or a benchmark module."""
    path = Path(argv0)
    if path.suffix == ".py" and path.name != "__main__.py":
        return f"python -m benchmarks.{path.stem}"
    return "nf-dist"


def summary(label: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    subset = [r["subset"]["aruc"] for r in runs if "subset" in r]
    return {
        "label": label,
        **({"mean_subset_aruc": round(sum(subset) / len(subset), 4)} if subset else {}),
        "mean_heldout_aruc": round(sum(r["heldout_aruc"] for r in runs) / len(runs), 4),
        "mean_fingerprints": round(sum(r["num_fingerprints"] for r in runs) / len(runs), 1),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", required=True, help="a finished quickstart run's folder")
    parser.add_argument("--out", required=True)
    parser.add_argument("--trial", action="append", default=[], metavar="LABEL=ARGS")
    parser.add_argument("--collect", action="append", default=[], metavar="LABEL=DIR,DIR")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--protocol", default="", help="how the trials were chosen, recorded")
    parser.add_argument(
        "--subset", help="also score the held-out suspects whose ids match this glob, alone"
    )
    args = parser.parse_args()
    zoo = Path(args.zoo)
    trials = []
    for number, spec in enumerate(args.trial):
        label, _, rest = spec.partition("=")
        runs = []
        for seed in args.seeds:
            folder = zoo.parent / f"{zoo.name}_{args.out}_{number}_s{seed}"
            arguments = [*shlex.split(rest), "--set", f"fingerprint.seed={seed}"]
            runs.append(run_trial(zoo, folder, arguments, args.subset))
            print(f"{label} seed {seed}: held-out ARUC {runs[-1]['heldout_aruc']}")
        trials.append(summary(label, runs))
    for spec in args.collect:
        label, _, folders = spec.partition("=")
        runs = [collected(Path(f), args.subset) for f in folders.split(",")]
        trials.append(summary(label, runs))
    record = {
        "command": f"python -m benchmarks.quickstart.trials {shlex.join(sys.argv[1:])}",
        "machine": machine(),
        "zoo": str(zoo),
        "protocol": args.protocol,
        "trials": trials,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(record, indent=2))
    lines = [
        f"# Quickstart trials: {args.out}",
        "",
        f"Command: `{record['command']}`  ",
        f"Machine: {record['machine']}  ",
        f"Protocol: {args.protocol or '(none given)'}",
        "",
        "| trial | seeds | held-out ARUC per seed | mean | fingerprints per seed | mean |",
        "|---|---|---|---|---|---|",
    ]
    for trial in trials:
        runs = trial["runs"]
        seeds = " ".join(str(r["seed"]) for r in runs)
        arucs = " / ".join(f"{r['heldout_aruc']:.3f}" for r in runs)
        counts = " / ".join(str(r["num_fingerprints"]) for r in runs)
        lines.append(
            f"| {trial['label']} | {seeds} | {arucs} | {trial['mean_heldout_aruc']:.3f} | "
            f"{counts} | {trial['mean_fingerprints']} |"
        )
        if "mean_subset_aruc" in trial:
            alone = " / ".join(f"{r['subset']['aruc']:.3f}" for r in runs)
            lines.append(
                f"| ... held-out ids matching `{args.subset}` alone | {seeds} | {alone} | "
                f"{trial['mean_subset_aruc']:.3f} | | |"
            )
    lines += ["", "Each run's command, folder and held-out rates are in the JSON beside this."]
    (RESULTS / f"{args.out}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
