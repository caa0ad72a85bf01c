"""``nf-dist report``: a Markdown report with PNG plots from an evaluation's tables.

Reads ``rates.parquet``, ``margins.parquet`` and ``metrics.json`` written by
:mod:`nf_dist.pipelines.evaluate` (and, where present, ``ablation.json`` and ``stealth.json``
beside them)
and writes ``report.md`` with: the metrics table (held-out and all models), robustness-uniqueness
curves per method (the paper's Fig. 4), mean matching-rate margins per attack (Figs. 5-6) and per
architecture for distillation and Knockoff (Fig. 7), and a grid of each method's fingerprints.
Every number in the report is read from those files.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import yaml

from nf_dist.config import to_dict
from nf_dist.errors import ConfigError
from nf_dist.fingerprint.fingerprint_set import load_fingerprint_set, save_grid
from nf_dist.storage.uri import is_remote, write_bytes_atomic

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from nf_dist.scoring import robustness, uniqueness  # noqa: E402
from nf_dist.storage.uri import join, read_bytes  # noqa: E402


def _table(uri: str) -> list[dict[str, Any]]:
    try:
        return pq.read_table(io.BytesIO(read_bytes(uri))).to_pylist()
    except FileNotFoundError:
        return []


def curves_plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Robustness R(t) and uniqueness U(t) per method on the held-out suspects."""
    by_method: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["use"] == "heldout":
            by_method[row["method"]].append(row)
    thresholds = np.linspace(0, 1, 201)
    fig, axes = plt.subplots(1, max(1, len(by_method)), figsize=(4 * max(1, len(by_method)), 3.2))
    for ax, (method, group) in zip(np.atleast_1d(axes), sorted(by_method.items())):
        pos = [r["rate"] for r in group if r["role"] == "positive"]
        neg = [r["rate"] for r in group if r["role"] == "negative"]
        ax.plot(thresholds, [robustness(pos, t) for t in thresholds], label="robustness")
        ax.plot(thresholds, [uniqueness(neg, t) for t in thresholds], label="uniqueness")
        ax.set_title(method)
        ax.set_xlabel("threshold")
        ax.set_ylim(-0.02, 1.02)
    np.atleast_1d(axes)[0].legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def budget_plot(budgets: list[dict[str, Any]], path: Path) -> bool:
    """Held-out ARUC, ROC AUC and TPR at 1% FPR against the query budget, one line per method;
    False if the evaluation has no budget curve."""
    held = [b for b in budgets if b["split"] == "heldout"]
    if not held:
        return False
    names = (("aruc", "ARUC"), ("roc_auc", "ROC AUC"), ("tpr_at_1pct_fpr", "TPR at 1% FPR"))
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2))
    for ax, (key, title) in zip(axes, names):
        for method in sorted({b["method"] for b in held}):
            points = sorted((b["budget"], b[key]) for b in held if b["method"] == method)
            ax.plot(*zip(*points), marker="o", markersize=3, label=method)
        ax.set_xscale("log")
        ax.set_xlabel("queries (first B fingerprints)")
        ax.set_title(title)
        ax.set_ylim(-0.02, 1.02)
    axes[0].legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _bound(metrics: dict[str, Any]) -> str:
    """The mean-rate bound on ARUC (``-`` in metrics written before it was recorded)."""
    return f"{metrics['aruc_bound']:.3f}" if "aruc_bound" in metrics else "-"


def budget_table(budgets: list[dict[str, Any]]) -> list[str]:
    """Markdown rows: held-out ARUC [95% interval] / ROC AUC / TPR@1%FPR per method (rows) and
    budget."""
    held = [b for b in budgets if b["split"] == "heldout"]
    ladder = sorted({b["budget"] for b in held if not b["full_set"]})
    lines = [
        "| method | " + " | ".join(f"B={b}" for b in ladder) + " | full set |",
        "|---|" + "---|" * (len(ladder) + 1),
    ]
    for method in sorted({b["method"] for b in held}):
        cells = {b["budget"]: b for b in held if b["method"] == method and not b["full_set"]}
        full = next(b for b in held if b["method"] == method and b["full_set"])
        row = [_budget_cell(cells[b]) if b in cells else "-" for b in ladder]
        row.append(f"{_budget_cell(full)} (B={full['budget']})")
        lines.append(f"| {method} | " + " | ".join(row) + " |")
    return lines


def _budget_cell(entry: dict[str, Any]) -> str:
    interval = (
        f" [{entry['aruc_ci95_low']:.2f}, {entry['aruc_ci95_high']:.2f}]"
        if entry.get("aruc_ci95_low") is not None  # budgets written before intervals: none
        else ""
    )
    return (
        f"{entry['aruc']:.3f}{interval} / {entry['roc_auc']:.3f} / {entry['tpr_at_1pct_fpr']:.2f}"
    )


def margins_plot(margins: list[dict[str, Any]], key: str, path: Path, attacks: set[str]) -> bool:
    """Mean margin (positive minus its mirror) per ``key`` value and method; False if no data."""
    chosen = [m for m in margins if m["attack"] in attacks] if attacks else margins
    if not chosen:
        return False
    methods = sorted({m["method"] for m in chosen})
    groups = sorted({m[key] for m in chosen})
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(groups) * len(methods)), 3.2))
    for i, method in enumerate(methods):
        values = [
            np.mean([m["margin"] for m in chosen if m["method"] == method and m[key] == g] or [0])
            for g in groups
        ]
        ax.bar(np.arange(len(groups)) + i * width, values, width, label=method)
    ax.set_xticks(np.arange(len(groups)) + width * (len(methods) - 1) / 2)
    ax.set_xticklabels(groups, rotation=45, ha="right")
    ax.set_ylabel("matching-rate margin")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_report(
    evaluation_uri: str, output_dir: str, fingerprints: dict[str, str] | None = None
) -> Path:
    """Write ``report.md`` and its PNGs into ``output_dir``; returns the report's path."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = json.loads(read_bytes(join(evaluation_uri, "metrics.json")))
    rows = _table(join(evaluation_uri, "rates.parquet"))
    margins = _table(join(evaluation_uri, "margins.parquet"))
    lines = [
        "# nf-dist evaluation report",
        "",
        f"Benchmark: `{metrics['bench_uri']}`; evaluation: `{evaluation_uri}`.  ",
        f"Generation models (excluded from held-out): "
        f"{', '.join(metrics['split']['generation_models']) or 'none'}; "
        f"{len(metrics['split']['heldout_models'])} held-out suspects.",
        "",
        "| method | split | ARUC | ARUC 95% CI | ARUC bound (mean rates) | ROC AUC | TPR@1%FPR | "
        "TPR@5%FPR | perfect-separation width |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method, entry in sorted(metrics["methods"].items()):
        for split in ("heldout", "all"):
            if split not in entry:
                continue
            m = entry[split]
            lines.append(
                f"| {method} | {split} | {m['aruc']:.4f} | "
                f"[{m['aruc_ci95'][0]:.3f}, {m['aruc_ci95'][1]:.3f}] | "
                f"{_bound(m)} | {m['roc_auc']:.4f} | "
                f"{m['tpr_at_1pct_fpr']:.3f} | {m['tpr_at_5pct_fpr']:.3f} | "
                f"{m['perfect_separation_width']:.3f} |"
            )
    curves_plot(rows, out / "curves.png")
    lines += ["", "## Robustness and uniqueness (held-out suspects)", "", "![](curves.png)"]
    budgets = _table(join(evaluation_uri, "budgets.parquet"))
    if budget_plot(budgets, out / "budgets.png"):
        lines += ["", "## Query budgets (held-out suspects; the first B fingerprints)", ""]
        lines += [
            "![](budgets.png)",
            "",
            "Cells: ARUC [95% bootstrap interval] / ROC AUC / TPR at 1% FPR.",
            "",
        ]
        lines += budget_table(budgets)
    if margins_plot(margins, "attack", out / "margins_attack.png", set()):
        lines += ["", "## Margins by attack (positive minus its mirror)", ""]
        lines += ["![](margins_attack.png)", ""]
        lines += ["| method | attack | mean margin |", "|---|---|---|"]
        for method, entry in sorted(metrics["methods"].items()):
            for attack, value in entry["margins_by_attack"].items():
                lines.append(f"| {method} | {attack} | {value:.3f} |")
    if margins_plot(margins, "arch", out / "margins_arch.png", {"distill", "knockoff"}):
        lines += ["", "## Margins per architecture: distillation and Knockoff", ""]
        lines.append("![](margins_arch.png)")
    sets = _optional_json(join(evaluation_uri, "sets.json")) or {}
    if sets:
        lines += _sets_section(sets, metrics)
    ablation = _optional_json(join(evaluation_uri, "ablation.json")) or []
    if ablation:
        lines += ["", "## Ablation: the three tricks and the discriminator sign", ""]
        lines += [
            "| variant | fingerprints | held-out ARUC | all-model ARUC |",
            "|---|---|---|---|",
        ]
        for row in ablation:
            held, every = row.get("heldout_aruc"), row.get("all_aruc")
            lines.append(
                f"| {row['variant']} | {row['num_fingerprints']} | "
                f"{'-' if held is None else f'{held:.4f}'} | "
                f"{'-' if every is None else f'{every:.4f}'} |"
            )
    run_record = _optional_json(join(evaluation_uri, "experiment.json")) or {}
    if run_record:
        lines += [
            "",
            "## Wall times of this run (reused sets cost nothing; each set's own time is above)",
            "",
        ]
        lines += ["| stage | seconds |", "|---|---|"]
        lines += [f"| {k} | {v:.0f} |" for k, v in run_record["wall_s"].items()]
    stealth = _optional_json(join(evaluation_uri, "stealth.json")) or {}
    if stealth:
        lines += _stealth_section(stealth)
    if fingerprints:
        lines += ["", "## Fingerprints", ""]
        for method, uri in sorted(fingerprints.items()):
            save_grid(load_fingerprint_set(uri).images[:64], str(out / f"grid_{method}.png"))
            lines.append(f"**{method}**  \n![](grid_{method}.png)\n")
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass(frozen=True)
class ReportConfig:
    """``nf-dist report``: the evaluation to report on, where the report goes (local or
    ``s3://``; None: the evaluation's folder) and the fingerprint sets to show as grids."""

    evaluation_uri: str = ""
    output_uri: str | None = None
    fingerprints: dict[str, str] = field(default_factory=dict)


def publish_report(config: ReportConfig) -> str:
    """Write the report (drawn in a local folder, then uploaded if the output is remote) with
    the resolved config beside it; returns the report's URI."""
    if not config.evaluation_uri:
        raise ConfigError("report needs an evaluation: nf-dist report EVALUATION_URI")
    output = config.output_uri or config.evaluation_uri
    record = yaml.safe_dump({"config": to_dict(config)}, sort_keys=False).encode()
    if not is_remote(output):
        path = write_report(config.evaluation_uri, output, config.fingerprints)
        (Path(output) / "report.config.yaml").write_bytes(record)
        return str(path)
    with tempfile.TemporaryDirectory() as folder:
        write_report(config.evaluation_uri, folder, config.fingerprints)
        for file in sorted(Path(folder).iterdir()):
            write_bytes_atomic(join(output, file.name), file.read_bytes())
    write_bytes_atomic(join(output, "report.config.yaml"), record)
    return join(output, "report.md")


def _optional_json(uri: str) -> Any:
    try:
        return json.loads(read_bytes(uri))
    except FileNotFoundError:
        return None


def _sets_section(sets: dict[str, Any], metrics: dict[str, Any]) -> list[str]:
    """How each set was made, and NaturalFinger's ARUC per GAN where there are several."""
    lines = ["", "## Fingerprint sets", ""]
    lines += ["| set | method | GAN | fingerprints | generation wall s |", "|---|---|---|---|---|"]
    for name, record in sorted(sets.items()):
        count = record["num_fingerprints"] or f"0 ({record.get('failure', 'none kept')})"
        lines.append(
            f"| {name} | {record['method']} | {record.get('gan') or '-'} | "
            f"{count} | {record.get('wall_s', float('nan')):.0f} |"
        )
    by_gan = {n: r for n, r in sets.items() if r.get("gan")}  # the generative sets
    if len({r["gan"] for r in by_gan.values()}) > 1:
        lines += ["", "## GAN sensitivity (each generative set per generator)", ""]
        lines += ["| set | GAN | GAN checkpoint | held-out ARUC | all-model ARUC |"]
        lines += ["|---|---|---|---|---|"]
        for name, record in sorted(by_gan.items()):
            entry = metrics["methods"].get(name, {})
            held = entry.get("heldout", {}).get("aruc", float("nan"))
            every = entry.get("all", {}).get("aruc", float("nan"))
            lines.append(
                f"| {name} | {record['gan']} | `{record.get('gan_uri')}` | {held:.4f} | "
                f"{every:.4f} |"
            )
    return lines


def _stealth_section(stealth: dict[str, Any]) -> list[str]:
    seeds = ", ".join(str(s) for s in stealth["seeds"])
    lines = ["", "## Stealthiness: detection rate of the adversary's detector", ""]
    lines.append(
        f"Detector: 9-layer CNN, {stealth['detector']['epochs']} epochs, clean vs Gaussian noise "
        f"(sd {stealth['detector']['noise_sd']}) and FGSM against `{stealth['adversary_model']}`; "
        f"seeds {seeds}. Lower is stealthier; clean test images give the false-alarm rate."
    )
    lines += ["", "| images | detection rate (mean) | std | per seed |", "|---|---|---|---|"]
    for name, entry in sorted(stealth["detection_rate"].items(), key=lambda kv: kv[1]["mean"]):
        per_seed = ", ".join(f"{r:.3f}" for r in entry["per_seed"])
        lines.append(f"| {name} | {entry['mean']:.4f} | {entry['std']:.4f} | {per_seed} |")
    return lines


def write_tune_report(
    output_dir: str, trials: list[dict[str, Any]], summary: dict[str, Any], params: list[str]
) -> Path:
    """``report.md`` of a sweep: the objective against each hyperparameter, every trial, the
    best settings beside the base ones, and both scored on the test suspects."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    metric = summary["metric"]
    columns = max(1, len(params))
    fig, axes = plt.subplots(1, columns, figsize=(4 * columns, 3.2), squeeze=False)
    for ax, name in zip(axes[0], params, strict=False):
        points = [
            (t[f"param_{name}"], t["last_objective"])
            for t in trials
            if t["last_objective"] is not None and isinstance(t[f"param_{name}"], (int, float))
        ]
        if points:
            x, y = zip(*points, strict=True)
            ax.scatter(x, y, s=28)
        base = summary["base"].get(name)
        if isinstance(base, (int, float)):
            ax.axvline(base, color="grey", linestyle="--", linewidth=1, label="base")
            ax.legend(fontsize=7)
        ax.set_xlabel(name)
        ax.set_ylabel(f"{metric} (last report)")
    fig.tight_layout()
    fig.savefig(out / "objective_vs_params.png", dpi=110)
    plt.close(fig)
    lines = [
        f"# Tune sweep: {summary['method']}",
        "",
        f"{summary['num_trials']} trials, objective `{metric}` on "
        f"{len(summary['split']['validation'])} validation suspects; "
        f"{len(summary['split']['generation'])} generation models; "
        f"{len(summary['split']['test'])} test suspects. Sweep wall time "
        f"{summary['sweep_wall_s']:.0f} s, total {summary.get('wall_s', float('nan')):.0f} s.",
        "",
        "![](objective_vs_params.png)",
        "",
        "| setting | base | tuned |",
        "|---|---|---|",
    ]
    lines += [
        f"| {name} | {_fmt(summary['base'].get(name))} | {_fmt(summary['best_params'][name])} |"
        for name in params
    ]
    test = summary.get("test", {})
    if test and "failure" not in test:
        lines += ["", "## On the test suspects (scored once, after the sweep)", ""]
        lines += ["| settings | test ARUC | TPR@1%FPR |", "|---|---|---|"]
        lines += [
            f"| {label} | {entry['aruc']:.4f} | {entry['tpr_at_1pct_fpr']:.3f} |"
            for label, entry in test.items()
        ]
    lines += ["", "## Trials", ""]
    header = ["trial", "status", "reports", *params, "last objective", "fingerprints"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for t in trials:
        last = t["last_objective"]
        cells = [
            str(t["trial_id"]),
            t["status"],
            str(t["reports"]),
            *(_fmt(t[f"param_{n}"]) for n in params),
            "-" if last is None else f"{last:.4f}",
            str(t.get("num_fingerprints")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
