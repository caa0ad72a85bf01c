"""How much training the cpu40_hq build has left, forecast from the rows it has built (issue 27).

Usage (from the project root, with both builds on disk):
    .venv/bin/python -m benchmarks.quality_trend.build_forecast \
        --base runs/bench/cpu40 --build runs/bench/cpu40_hq

The model, stated because it is only a forecast: a row not yet built at the higher level takes its
time in the cpu40 build (the same id) x the ratio of its epochs at the two levels x a per-epoch
factor. The factor is measured on the rows built at both levels with the same change of layout
(width and stem stride of the row's own architecture), as the median of their per-epoch time
ratios; where the layout does not change (MobileNetV2 has a stride-1 stem at both levels) it is
1. A student's teacher is counted at the student's factor, which undercounts the students of the
width-0.5 source. A row in training has the time its own epochs so far say it has left. Wall
time on W workers is at least the sum over W.

Writes ``results/builds/<profile>_forecast.{json,md}`` with the command and the machine.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks.common import machine
from nf_dist.bench.catalog import Profile, load_profile
from nf_dist.bench.status import bench_status
from nf_dist.bench.store import BenchStore
from nf_dist.bench.zoo import ZooModel

RESULTS = Path(__file__).parent / "results" / "builds"

Layout = tuple[float, int, int]  # (width at the higher level, its stem stride, the base's stride)


def layout_change(model: ZooModel, base: ZooModel) -> Layout:
    return (model.width, model.stem_stride, base.stem_stride)


def forecast(base: Profile, base_uri: str, profile: Profile, uri: str) -> dict[str, Any]:
    """Per row its state and seconds (recorded, or forecast to go), and the factors used."""
    base_rows = {m.id: BenchStore(base_uri).read_row(m.id) for m in base.all_models}
    base_models = base.by_id()
    statuses = bench_status(profile, uri)
    models = profile.by_id()
    ratios: dict[Layout, list[float]] = defaultdict(list)
    for status in statuses:
        model, base_row = models[status.id], base_rows.get(status.id)
        if status.state == "built" and model.attack == "scratch" and base_row is not None:
            base_model = base_models[status.id]
            ratios[layout_change(model, base_model)].append(
                (status.seconds / model.train.epochs)  # type: ignore[operator]
                / (base_row["wall_s"] / base_model.train.epochs)
            )
    factors = {layout: statistics.median(values) for layout, values in ratios.items()}
    rows = []
    for status in statuses:
        model = models[status.id]
        row: dict[str, Any] = {"id": status.id, "state": status.state, "attack": model.attack}
        if status.state == "built":
            row["seconds"] = status.seconds
        elif status.state == "training":
            row["seconds_left"] = status.seconds_left
        else:
            base_model, base_row = base_models[status.id], base_rows[status.id]
            if base_row is None:
                raise SystemExit(f"{status.id} is not built in the base bench; build it first")
            layout = layout_change(model, base_model)
            same = (model.width, model.stem_stride) == (base_model.width, base_model.stem_stride)
            factor = 1.0 if same else factors.get(layout)
            if factor is None:
                raise SystemExit(f"no row built at both levels measures layout {layout} yet")
            epochs_ratio = model.train.epochs / base_model.train.epochs
            row["seconds_left"] = base_row["wall_s"] * epochs_ratio * factor
            row["factor"] = factor
        rows.append(row)
    return {
        "factors": {
            f"width {w:g}, stride {s} (base stride {b})": f for (w, s, b), f in factors.items()
        },
        "rows": rows,
        "built_seconds": sum(r.get("seconds", 0.0) for r in rows),
        "seconds_left": sum(r.get("seconds_left") or 0.0 for r in rows),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--base", default="runs/bench/cpu40")
    parser.add_argument("--base-profile", default="cpu40")
    parser.add_argument("--build", default="runs/bench/cpu40_hq")
    parser.add_argument("--profile", default="cpu40_hq")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    result = forecast(
        load_profile(args.base_profile), args.base, load_profile(args.profile), args.build
    )
    command = "python -m benchmarks.quality_trend.build_forecast " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    record = {"command": command.strip(), "workers": args.workers, **result, "machine": machine()}
    counts: dict[str, int] = defaultdict(int)
    for row in result["rows"]:
        counts[row["state"]] += 1
    hours_left = result["seconds_left"] / 3600
    lines = [
        f"# How much training the {args.profile} build has left (a forecast)",
        "",
        f"`{record['command']}`; the model is in the script's docstring. "
        f"CPU: {record['machine']['cpu_model']}.",  # type: ignore[index]
        "",
        f"Rows: {counts['built']} built ({result['built_seconds']:,.0f} s of training), "
        f"{counts['training']} in training, {counts['waiting'] + counts['rebuild']} to build.",
        "",
        "Per-epoch factors measured on rows built at both levels (higher / base):",
        "",
        *(f"- {name}: {factor:.2f}x" for name, factor in result["factors"].items()),
        "",
        f"Forecast: {result['seconds_left']:,.0f} slot-seconds left ({hours_left:.1f} h on one "
        f"worker; at least {hours_left / args.workers:.1f} h on {args.workers}).",
        "",
        "| row | state | attack | seconds (built) or forecast to go |",
        "|---|---|---|---|",
    ]
    for row in result["rows"]:
        seconds = row.get("seconds", row.get("seconds_left")) or 0.0
        lines.append(f"| {row['id']} | {row['state']} | {row['attack']} | {seconds:,.0f} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.profile}_forecast.json").write_text(json.dumps(record, indent=1))
    (RESULTS / f"{args.profile}_forecast.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:14]))


if __name__ == "__main__":
    main()
