"""Probe: which source recipe reaches the higher model-quality level (test accuracy >= 0.85) on
this machine, for the quality-trend benchmark (issue 27).

    python -m benchmarks.quality_trend.probe --width 0.25 --stem-stride 1 --epochs 8 16 --note "..."

Trains the cpu profile's source architecture (ResNet18) on training half ``a`` (25,000 images)
with the cpu ``source`` recipe (one-cycle Nesterov SGD, peak lr 0.2, label smoothing 0.2, flip and
2-pixel crops) at the given width, stem stride and epochs, once per epoch count, and records the
test accuracy, wall seconds and the machine into ``results/probe.{json,md}`` (appended per run).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from benchmarks.common import machine
from nf_dist.data import DataConfig, load_splits
from nf_dist.models import create_classifier
from nf_dist.models.inference import accuracy
from nf_dist.models.training import TrainConfig, train_classifier

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--stem-stride", type=int, default=1)
    parser.add_argument("--epochs", type=float, nargs="+", default=[8.0])
    parser.add_argument("--note", default="", help="what else ran on the machine meanwhile")
    args = parser.parse_args(argv)
    splits = load_splits(DataConfig(), with_query=False)
    RESULTS.mkdir(exist_ok=True)
    log = RESULTS / "probe.json"
    runs = json.loads(log.read_text()) if log.exists() else []
    for epochs in args.epochs:
        torch.manual_seed(0)
        model = create_classifier(args.arch, width=args.width, stem_stride=args.stem_stride)
        recipe = TrainConfig(epochs=epochs, lr=0.2, label_smoothing=0.2, crop_padding=2)
        started = time.perf_counter()
        train_classifier(model, splits.half_a, recipe, progress=False)
        seconds = time.perf_counter() - started
        runs.append(
            {
                "command": "python -m benchmarks.quality_trend.probe "
                + shlex.join(argv if argv is not None else sys.argv[1:]),
                "arch": args.arch,
                "width": args.width,
                "stem_stride": args.stem_stride,
                "epochs": epochs,
                "test_accuracy": accuracy(model, splits.test),
                "train_seconds": round(seconds, 1),
                "meanwhile": args.note or "not stated",
                "machine": machine(),
            }
        )
        log.write_text(json.dumps(runs, indent=2))
        print(json.dumps({k: v for k, v in runs[-1].items() if k != "machine"}), flush=True)
    lines = [
        "# Source-recipe probe for the higher quality level (target: test accuracy >= 0.85)",
        "",
        "| arch | width | stem stride | epochs | test accuracy | train seconds | CPU | meanwhile |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        cpu = run["machine"]["cpu_model"]
        lines.append(
            f"| {run['arch']} | {run['width']} | {run['stem_stride']} | {run['epochs']:g} | "
            f"{run['test_accuracy']:.4f} | {run['train_seconds']} | {cpu} | {run['meanwhile']} |"
        )
    lines += ["", "Commands: in `probe.json` beside this file, with each run's machine record."]
    (RESULTS / "probe.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
