"""Benchmark: the quickstart, cold, on this machine; records wall time and held-out ARUC.

Usage (from the project root):
    .venv/bin/python -m benchmarks.quickstart [--set key=value ...]

"Cold" means a fresh output folder and a fresh decoded-data cache, so every stage (data decoding,
the zoo, the GAN, the fingerprint, verification) runs. Results go to
``benchmarks/results/quickstart.json`` and ``benchmarks/results/quickstart.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine
from nf_dist.config import load_config, read_yaml
from nf_dist.pipelines.quickstart import DEFAULT_CONFIG, QuickstartConfig, run_quickstart

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument(
        "--keep", metavar="DIR", help="keep the run's folder here (default: removed at the end)"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nf_quickstart_"))
    os.environ["NF_DIST_CACHE"] = str(work / "cache")
    run_dir = Path(args.keep) if args.keep else work / "run"
    if run_dir.exists():
        parser.error(f"--keep {run_dir}: the folder exists; a cold run needs a new one")
    overrides = [f"output_dir={run_dir}", *args.overrides]
    config = load_config(QuickstartConfig, overrides=overrides, base=read_yaml(DEFAULT_CONFIG))
    started = time.perf_counter()
    result = run_quickstart(config, progress=False)
    wall_s = time.perf_counter() - started
    record = {
        "command": " ".join(["python -m benchmarks.quickstart", *sys.argv[1:]]),
        "machine": machine(),
        "wall_s": round(wall_s, 1),
        "stage_seconds": result.stage_seconds,
        "heldout": result.heldout,
        "all_models": result.all_models,
        "num_fingerprints": result.num_fingerprints,
        "gan_test_accuracy": result.gan_test_accuracy,
        "suspects": result.rows,
        "targets": {"wall_s_max": 600, "heldout_aruc_min": 0.9},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "quickstart.json").write_text(json.dumps(record, indent=2))
    report = Path(result.report_path).read_text()
    (RESULTS / "quickstart.md").write_text(
        f"# Quickstart benchmark (cold)\n\nCommand: `{record['command']}`  \n"
        f"Machine: {record['machine']}  \nWall time: {wall_s:.0f} s (target < 600 s); "
        f"held-out ARUC {result.heldout.get('aruc', float('nan')):.4f} (target >= 0.9).\n\n"
        + report.split("\n", 1)[1].replace("](", "](quickstart_")
    )
    for name in ("fingerprints.png", "gan_samples.png"):
        shutil.copy(Path(config.output_dir) / name, RESULTS / f"quickstart_{name}")
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({k: record[k] for k in ("wall_s", "heldout", "num_fingerprints")}, indent=2))


if __name__ == "__main__":
    main()
