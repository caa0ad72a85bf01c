"""Benchmark: how NaturalFinger's margin over the baselines moves with model quality.

Usage (from the project root, after the two experiments of ``jobs/configs/trend_cpu40.yaml``):
    .venv/bin/python -m benchmarks.quality_trend.run \\
        --level cpu=runs/experiments/trend_cpu40 --level hq=runs/experiments/trend_cpu40_hq

Per level (an experiment's output folder): the benchmark it ran on, its source's test accuracy,
the test-set agreement of its distilled and Knockoff students with the source, and per set the
held-out ARUC with its 95% interval, the bound the mean rates put on it (``aruc_bound``), ROC AUC
and TPR at 1% FPR. ``ours`` is the NaturalFinger set with the highest *validation* ARUC (the rule
the experiment config states); held-out numbers are reported, never used to choose. Writes
``results/quality_trend.{json,md,png}`` with the command and the machine.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pyarrow.parquet as pq

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.common import machine  # noqa: E402
from benchmarks.quality_trend.agreement import STUDENT_ATTACKS, model_agreements  # noqa: E402
from nf_dist.bench import load  # noqa: E402

RESULTS = Path(__file__).parent / "results"
GROUPS = ("students", "derived", "independent", "independent students", "mirror-derived")


def choose_ours(methods: dict[str, Any], candidates: list[str] | None = None) -> str:
    """The NaturalFinger set (of ``candidates``, default every one) with the highest validation
    ARUC (ties: the first by name)."""
    candidates = sorted(candidates or [n for n in methods if n.startswith("naturalfinger")])
    if not candidates:
        raise ValueError("the experiment has no NaturalFinger set")
    return max(candidates, key=lambda name: methods[name]["validation"]["aruc"])


def suspect_group(row: dict[str, Any]) -> str:
    """A held-out suspect's group for the per-group rates: ``students`` (distilled and Knockoff
    students of the source), ``derived`` (its other positives), ``independent`` (negatives
    trained from scratch), ``independent students`` (students of independent models or of the
    mirror) or ``mirror-derived`` (the mirror's fine-tuned, pruned, noised, adversarial copies)."""
    students = row["attack"] in STUDENT_ATTACKS
    if row["role"] == "positive":
        return "students" if students else "derived"
    if students:
        return "independent students"
    return "independent" if row["attack"] == "scratch" else "mirror-derived"


def group_rates(rates: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per set, the mean held-out matching rate of each suspect group (``rates.parquet`` rows):
    what an ARUC is made of, and what bounds it."""
    sums: dict[str, dict[str, list[float]]] = {}
    for row in rates:
        if row["use"] == "heldout":
            group = sums.setdefault(row["method"], {}).setdefault(suspect_group(row), [])
            group.append(row["rate"])
    return {
        method: {group: sum(values) / len(values) for group, values in sorted(groups.items())}
        for method, groups in sums.items()
    }


def quality_correlation(
    rates: list[dict[str, Any]], accuracy: dict[str, float]
) -> dict[str, float | None]:
    """Per set, the Pearson correlation between a scored negative's test accuracy and its
    matching rate (validation and held-out negatives): near 1 when a set tells strong models
    from weak ones rather than the source's lineage from others."""
    out: dict[str, float | None] = {}
    for method in sorted({r["method"] for r in rates}):
        pairs = [
            (accuracy[r["suspect"]], r["rate"])
            for r in rates
            if r["method"] == method and r["role"] == "negative" and r["use"] != "generation"
        ]
        xs, ys = np.array(pairs).T if len(pairs) > 2 else (np.zeros(0), np.zeros(0))
        spread = len(xs) > 2 and np.ptp(xs) > 0 and np.ptp(ys) > 0
        out[method] = float(np.corrcoef(xs, ys)[0, 1]) if spread else None
    return out


def level_row(
    metrics: dict[str, Any],
    source_accuracy: float,
    agreement: dict[str, float],
    candidates: list[str] | None = None,
    rates: list[dict[str, Any]] | None = None,
    sizes: dict[str, int] | None = None,
    context: dict[str, Any] | None = None,
    accuracy: dict[str, float] | None = None,
) -> dict:
    """One level's summary from an experiment's ``metrics.json`` (with its ``rates.parquet``
    rows and each set's size, where given) and its benchmark's facts."""
    methods = metrics["methods"]
    ours = choose_ours(methods, candidates)
    groups = group_rates(rates or [])
    correlation = quality_correlation(rates or [], accuracy or {}) if accuracy else {}
    sets = {
        name: {
            key: result["heldout"][key]
            for key in ("aruc", "aruc_ci95", "aruc_bound", "roc_auc", "tpr_at_1pct_fpr")
        }
        | {
            "validation_aruc": result["validation"]["aruc"],
            "fingerprints": (sizes or {}).get(name),
            "group_rates": groups.get(name, {}),
            "negatives_accuracy_rate_corr": correlation.get(name),
        }
        for name, result in methods.items()
    }
    return {
        "bench_uri": metrics["bench_uri"],
        "source_test_accuracy": source_accuracy,
        "student_agreement": agreement,
        "mean_student_agreement": sum(agreement.values()) / len(agreement) if agreement else None,
        **(context or {}),
        **verdict(sets, ours),
        "sets": sets,
    }


def verdict(sets: dict[str, dict], ours: str) -> dict[str, Any]:
    """``ours``, the best baseline by held-out ARUC, and whether ours' 95% interval lies above
    that baseline's point estimate."""
    baselines = {n: s for n, s in sets.items() if not n.startswith("naturalfinger")}
    best_baseline = max(baselines, key=lambda n: baselines[n]["aruc"]) if baselines else None
    return {
        "ours": ours,
        "best_baseline": best_baseline,
        "ours_interval_above_every_baseline": best_baseline is None
        or sets[ours]["aruc_ci95"][0] > sets[best_baseline]["aruc"],
    }


def same_candidates(levels: dict[str, dict]) -> list[str]:
    """Where the levels made different NaturalFinger sets, choose ``ours`` at every level among
    the sets all of them made (by validation ARUC, as the rule says), so that the trend follows
    one choice rule over one candidate list; each level keeps its own choice among all of its
    sets as ``ours_of_its_own_sets``. Returns that list."""
    names = [
        {n for n in level["sets"] if n.startswith("naturalfinger")} for level in levels.values()
    ]
    common = sorted(set.intersection(*names))
    if not common:
        raise ValueError("the levels share no NaturalFinger set to compare")
    for level in levels.values():
        validation = {
            n: {"validation": {"aruc": level["sets"][n]["validation_aruc"]}} for n in common
        }
        level.setdefault("ours_of_its_own_sets", level["ours"])
        level.update(verdict(level["sets"], choose_ours(validation)))
    return common


def bench_facts(bench_uri: str) -> tuple[float, dict[str, float], dict[str, Any]]:
    """The source's test accuracy, each student suspect's test-set agreement with it, and the
    context that bounds a level: the mean agreement of the independents trained from scratch
    and of the generation ensembles (surrogates and references), plainly and on the source's
    mistakes (``agreement.model_agreements``)."""
    source_accuracy, models = model_agreements(bench_uri)

    def of(group: str, key: str = "agreement") -> dict[str, float]:
        return {i: m[key] for i, m in models.items() if m["group"] == group}

    context: dict[str, Any] = {"independent_agreement": of("independents")}
    for name, group in (
        ("student", "students"),
        ("independent", "independents"),
        ("surrogate", "surrogates"),
        ("reference", "references"),
    ):
        if name != "student":  # the level's own mean_student_agreement
            context[f"mean_{name}_agreement"] = _mean(list(of(group).values()))
        context[f"mean_{name}_mistake_agreement"] = _mean(
            list(of(group, "mistake_agreement").values())
        )
    return source_accuracy, of("students"), context


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def plot(levels: dict[str, dict], path: Path) -> None:
    names = sorted({name for level in levels.values() for name in level["sets"]})
    order = sorted(levels, key=lambda k: levels[k]["source_test_accuracy"])
    xs = [levels[k]["source_test_accuracy"] for k in order]
    figure, axis = plt.subplots(figsize=(6, 4))
    ours = [levels[k]["sets"][levels[k]["ours"]]["aruc"] for k in order]
    axis.plot(xs, ours, marker="s", color="black", linewidth=2.5, label="ours (validation choice)")
    for name in names:
        ys = [levels[k]["sets"].get(name, {}).get("aruc") for k in order]
        if None in ys:
            continue
        axis.plot(xs, ys, marker="o", label=name)
    axis.set_xlabel("source test accuracy")
    axis.set_ylabel("held-out ARUC")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def markdown(record: dict[str, Any]) -> str:
    lines = ["# The quality trend: held-out ARUC at two model-quality levels", ""]
    lines += [f"Command: `{record['command']}`", f"Machine: {record['machine']['cpu_model']}", ""]
    if "candidates" in record:
        lines += [
            "`ours` at every level: of the NaturalFinger sets every level made ("
            + ", ".join(record["candidates"])
            + "), the one with the highest validation ARUC.",
            "",
        ]
    for name, level in record["levels"].items():
        if "from_record" in level:
            lines += [f"({name} from `{level['from_record']}`, made by `{level['made_by']}`.)", ""]
        lines.append(
            f"## {name}: source test accuracy {level['source_test_accuracy']:.3f}, students' "
            f"mean test-set agreement with it {level['mean_student_agreement'] or 0:.3f}"
        )
        context = [
            (key, level.get(f"mean_{key}_agreement"))
            for key in ("independent", "surrogate", "reference")
        ]
        known = [f"{key}s {value:.3f}" for key, value in context if value is not None]
        if known:
            lines += ["", "Mean test-set agreement with the source: " + ", ".join(known) + "."]
        mistakes = [
            (key, level.get(f"mean_{key}_mistake_agreement"))
            for key in ("student", "independent", "surrogate", "reference")
        ]
        known = [f"{key}s {value:.3f}" for key, value in mistakes if value is not None]
        if known:
            lines += ["", "On the source's mistakes (its wrong label given): " + ", ".join(known)]
        lines += [
            "",
            "| set | fingerprints | held-out ARUC [95%] | bound | ROC AUC | TPR@1% | validation "
            "ARUC | held-out mean rates: " + ", ".join(GROUPS) + " | corr(accuracy, rate) "
            "of negatives |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for set_name, s in sorted(level["sets"].items()):
            mark = " (ours)" if set_name == level["ours"] else ""
            low, high = s["aruc_ci95"]
            means = ", ".join(
                f"{s['group_rates'][g]:.2f}" if g in s.get("group_rates", {}) else "-"
                for g in GROUPS
            )
            lines.append(
                f"| {set_name}{mark} | {s.get('fingerprints') or '-'} | {s['aruc']:.3f} "
                f"[{low:.3f}, {high:.3f}] | {s['aruc_bound']:.3f} | {s['roc_auc']:.3f} | "
                f"{s['tpr_at_1pct_fpr']:.2f} | {s['validation_aruc']:.3f} | {means} | "
                f"{_number(s.get('negatives_accuracy_rate_corr'))} |"
            )
        verdict = "above" if level["ours_interval_above_every_baseline"] else "not above"
        lines += ["", f"Ours' interval is {verdict} every baseline's point estimate."]
        own = level.get("ours_of_its_own_sets", level["ours"])
        if own != level["ours"]:
            lines += [f"Of all of this level's own sets, validation ARUC chooses {own}."]
        lines += [""]
    return "\n".join(lines)


def recorded_level(path: Path) -> dict[str, Any]:
    """The one level an earlier run's ``quality_trend.json`` holds, with where it came from."""
    earlier = json.loads(path.read_text())
    if len(earlier["levels"]) != 1:
        raise ValueError(f"{path} holds {len(earlier['levels'])} levels; give a record of one")
    (level,) = earlier["levels"].values()
    return {**level, "from_record": str(path), "made_by": earlier["command"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--level", action="append", default=[], metavar="NAME=EXPERIMENT_DIR")
    parser.add_argument(
        "--record",
        action="append",
        default=[],
        metavar="NAME=QUALITY_TREND_JSON",
        help="a level summarised by an earlier run (its bench need not be on disk)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args(argv)
    levels = {}
    for spec in args.level:
        name, _, folder = spec.partition("=")
        evaluation = Path(folder) / "evaluation"
        metrics = json.loads((evaluation / "metrics.json").read_text())
        sets = json.loads((evaluation / "sets.json").read_text())
        accuracy, agreement, context = bench_facts(metrics["bench_uri"])
        levels[name] = level_row(
            metrics,
            accuracy,
            agreement,
            rates=pq.read_table(evaluation / "rates.parquet").to_pylist(),
            sizes={n: record["num_fingerprints"] for n, record in sets.items()},
            context=context,
            accuracy={r["id"]: r["test_accuracy"] for r in load(metrics["bench_uri"]).rows()},
        )
    for spec in args.record:
        name, _, path = spec.partition("=")
        levels[name] = recorded_level(Path(path))
    if not levels:
        parser.error("give at least one --level or --record")
    record: dict[str, Any] = {
        "command": "python -m benchmarks.quality_trend.run "
        + shlex.join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "levels": levels,
    }
    if len(levels) > 1:
        record["candidates"] = same_candidates(levels)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "quality_trend.json").write_text(json.dumps(record, indent=2))
    (args.output / "quality_trend.md").write_text(markdown(record))
    plot(levels, args.output / "quality_trend.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
