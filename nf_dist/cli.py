"""The ``nf-dist`` command."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from nf_dist import __version__
from nf_dist.config import load_config, read_yaml
from nf_dist.errors import NfDistError

logger = logging.getLogger("nf_dist")
T = TypeVar("T")


def _add_config_args(
    parser: argparse.ArgumentParser, default_help: str, *, smoke: bool = True
) -> None:
    parser.add_argument("--config", help=f"YAML config ({default_help})")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set lr=0.1",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    if not smoke:  # the quickstart is already the smallest whole run
        return
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="start from the command's smoke recipe (nf_dist/configs/smoke/); --config and "
        "--set apply on top",
    )


SMOKE_DIR = Path(__file__).parent / "configs" / "smoke"


def _load(
    cls: type[T],
    args: argparse.Namespace,
    recipe: str,
    overrides: Sequence[str] = (),
    *,
    record_in_output: bool = False,
) -> T:
    """The command's config: its defaults, the smoke recipe with ``--smoke``, ``--config``, then
    ``--set``. With ``record_in_output`` (commands whose ``output_uri`` is a folder) it is
    recorded there as ``config.yaml``; other commands call :func:`_record` themselves."""
    base = None
    if getattr(args, "smoke", False):
        path = SMOKE_DIR / f"{recipe}.yaml"
        if not path.exists():
            raise NfDistError(f"`{recipe}` has no smoke recipe (looked for {path})")
        base = read_yaml(path)
    config = load_config(cls, args.config, [*args.overrides, *overrides], base=base)
    if record_in_output:
        from nf_dist.storage.uri import join

        _record(config, join(config.output_uri, "config.yaml"))  # type: ignore[attr-defined]
    return config


def _record(config: Any, uri: str) -> None:
    """Write the resolved config, package version and git SHA to ``uri`` (atomically)."""
    from nf_dist.config import to_dict
    from nf_dist.storage.checkpoints import git_sha
    from nf_dist.storage.uri import write_bytes_atomic

    record = {
        "nf_dist_version": __version__,
        "git_sha": git_sha(),
        "argv": sys.argv,
        "config": to_dict(config),
    }
    write_bytes_atomic(uri, yaml.safe_dump(record, sort_keys=False).encode())


def _beside(output_uri: str) -> str:
    """Where a file or checkpoint output's resolved config goes."""
    return output_uri.removesuffix(".parquet") + ".config.yaml"


def _add_workers_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers",
        type=int,
        help="train data-parallel on N Ray Train workers (same as --set workers.num=N)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nf-dist",
        description="NaturalFinger fingerprints for proving a model was stolen.",
    )
    parser.add_argument("--version", action="version", version=f"nf-dist {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    quick = sub.add_parser("quickstart", help="train a small zoo and a GAN, fingerprint, verify")
    _add_config_args(quick, "default: the built-in quickstart.yaml", smoke=False)

    train = sub.add_parser("train", help="train a classifier from scratch on a data half")
    _add_config_args(train, "keys of TrainJobConfig")
    _add_workers_arg(train)

    gan = sub.add_parser("gan", help="GAN commands")
    gan_sub = gan.add_subparsers(dest="gan_command", required=True)
    gan_train = gan_sub.add_parser("train", help="train a class-conditional GAN")
    _add_config_args(gan_train, "keys of GanJobConfig")
    _add_workers_arg(gan_train)

    finger = sub.add_parser("fingerprint", help="generate a NaturalFinger fingerprint set")
    _add_config_args(finger, "keys of FingerprintJobConfig")
    finger.add_argument(
        "--engine",
        choices=["local", "ray"],
        help="local: the single-process reference; ray: models sharded over Ray actors",
    )
    finger.add_argument("--num-shards", type=int, help="shard actors for --engine ray")

    bench = sub.add_parser("bench", help="FingerBench: plan or build the benchmark on Ray")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    plan = bench_sub.add_parser("plan", help="print a profile's resolved catalog")
    plan.add_argument("--profile", default="smoke", help="paper, cpu, smoke or a catalog YAML")
    plan.add_argument("--json", action="store_true", help="print the rows as a JSON list")
    build = bench_sub.add_parser("build", help="build (or resume) a benchmark on Ray")
    build.add_argument("--profile", default="smoke", help="paper, cpu, smoke or a catalog YAML")
    build.add_argument("--smoke", action="store_true", help="the smoke profile (--profile smoke)")
    build.add_argument("--output", help="output URI (default runs/bench/<profile>)")
    build.add_argument("--address", help="Ray cluster address (default: embedded local Ray)")
    build.add_argument("--num-cpus", type=int, help="CPUs of the embedded local Ray")
    build.add_argument("--max-retries", type=int, default=2, help="retries per failed model")
    build.add_argument("--only", nargs="*", default=[], help="build these ids (and ancestors)")
    build.add_argument(
        "--metrics-port", type=int, help="serve Prometheus /metrics on this port (0: any)"
    )
    build.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a profile value, e.g. --set data.half_size=5000",
    )
    build.add_argument(
        "--dry-run", action="store_true", help="print the task graph and resources, build nothing"
    )
    build.add_argument("--no-progress", action="store_true", help="hide progress bars")

    evaluate = sub.add_parser(
        "evaluate", help="query every benchmark suspect with fingerprint sets; ARUC and margins"
    )
    _add_config_args(evaluate, "keys of EvaluateConfig")

    ablation = sub.add_parser("ablation", help="NaturalFinger's ablation (Table 3) on a benchmark")
    _add_config_args(ablation, "keys of AblationConfig")

    experiment = sub.add_parser(
        "experiment",
        help="every method's fingerprints on a benchmark, evaluated, stealthiness, report",
    )
    _add_config_args(experiment, "keys of ExperimentConfig")

    tune = sub.add_parser(
        "tune", help="Ray Tune sweep of a method's hyperparameters, scored on validation models"
    )
    _add_config_args(tune, "keys of TuneJobConfig")

    report = sub.add_parser("report", help="Markdown report with plots from an evaluation")
    report.add_argument(
        "evaluation", nargs="?", help="an evaluation's output folder or URI (evaluation_uri)"
    )
    report.add_argument("--output", help="report folder or URI (default: the evaluation's)")
    _add_config_args(report, "keys of ReportConfig")
    report.add_argument(
        "--fingerprints",
        nargs="*",
        default=[],
        metavar="METHOD=URI",
        help="fingerprint sets to show as grids",
    )

    verify = sub.add_parser("verify", help="check suspects against a fingerprint set")
    verify.add_argument("fingerprints", help="fingerprint set (.parquet, local or s3://)")
    verify.add_argument("suspects", nargs="*", help="suspect checkpoints (safetensors + sidecar)")
    verify.add_argument(
        "--unsafe-allow-pickle",
        action="append",
        default=[],
        metavar="FILE",
        help="accept this one suspect file as a pickle (torch.save); only for files you trust. "
        "It is read with torch's weights_only loader and needs a JSON sidecar",
    )
    verify.add_argument(
        "--positive", nargs="*", default=[], help="suspects known to be stolen (for ARUC)"
    )
    verify.add_argument(
        "--negative", nargs="*", default=[], help="suspects known to be independent (for ARUC)"
    )
    verify.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="judge stolen when the matching rate is >= this (default 0.5)",
    )
    verify.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def _quickstart(args: argparse.Namespace) -> int:
    from nf_dist.pipelines.quickstart import (
        DEFAULT_CONFIG,
        QuickstartConfig,
        format_table,
        run_quickstart,
    )

    base = read_yaml(DEFAULT_CONFIG) if args.config is None else None
    config = load_config(QuickstartConfig, args.config, args.overrides, base=base)
    result = run_quickstart(config, progress=not args.no_progress)
    print(format_table(result))
    return 0


def _job(args: argparse.Namespace) -> int:
    from nf_dist.pipelines import fingerprint, train

    kinds: dict[str, tuple[Any, Any]] = {
        "train": (train.TrainJobConfig, train.run_train),
        "gan": (train.GanJobConfig, train.run_gan),
        "fingerprint": (fingerprint.FingerprintJobConfig, fingerprint.run_fingerprint),
    }
    config_cls, run = kinds[args.command]
    overrides = []
    if getattr(args, "workers", None) is not None:
        overrides.append(f"workers.num={args.workers}")
    if getattr(args, "engine", None) is not None:
        overrides.append(f"engine={args.engine}")
    if getattr(args, "num_shards", None) is not None:
        overrides.append(f"num_shards={args.num_shards}")
    recipe = "gan" if args.command == "gan" else args.command
    config = _load(config_cls, args, recipe, overrides)
    _record(config, _beside(config.output_uri))
    result = run(config, progress=not args.no_progress)
    if args.command == "train":
        print(f"saved {config.output_uri} (test accuracy {result:.4f})")
    elif args.command == "gan":
        print(f"saved {config.output_uri} and sample grid {result}")
    else:
        print(f"saved {len(result)} fingerprints to {config.output_uri}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from nf_dist.bench.build import BuildConfig, build_bench, task_graph
    from nf_dist.bench.catalog import load_profile
    from nf_dist.config import parse_overrides

    overrides = parse_overrides(getattr(args, "overrides", []))
    if getattr(args, "smoke", False):
        args.profile = "smoke"
    profile = load_profile(args.profile, overrides)
    if args.bench_command == "plan":
        if args.json:
            print(json.dumps(profile.plan(), indent=1))
        else:
            print(f"profile {profile.name}: {profile.counts()}")
            for row in profile.models:
                print(f"  {row.id:<34} {row.role:<9} {row.attack:<12} {row.arch:<16} {row.params}")
        return 0
    only = tuple(args.only)
    if args.dry_run:
        graph = task_graph(profile, only)
        print(json.dumps({"profile": profile.name, "tasks": graph}, indent=1))
        gpus = sum(t["num_gpus"] for t in graph)
        print(
            f"{len(graph)} tasks; GPU asks add up to {gpus:g} GPUs in all",
            file=sys.stderr,
        )
        return 0
    config = BuildConfig(
        profile=args.profile,
        output_uri=args.output or f"runs/bench/{profile.name}",
        address=args.address,
        num_cpus=args.num_cpus,
        max_retries=args.max_retries,
        only=only,
        metrics_port=args.metrics_port,
        profile_overrides=overrides,
        progress=not args.no_progress,
    )
    report = build_bench(config)
    print(
        f"bench {profile.name} at {config.output_uri}: built {len(report.built)}, "
        f"already there {len(report.skipped)}, retries {report.retries}, "
        f"{report.wall_s:.0f}s"
    )
    below = report.below_floor
    if below:
        print(
            f"{len(below)} model(s) below their accuracy floor (a weak attack is not a "
            "credible theft; strengthen their recipes in the catalog):"
        )
        for check in below:
            print(
                f"  {check.id:<34} test acc {check.test_accuracy:.3f} < floor {check.floor:.3f} "
                f"(of {check.reference})"
            )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from nf_dist.pipelines.evaluate import EvaluateConfig, evaluate

    config = _load(EvaluateConfig, args, "evaluate", record_in_output=True)
    metrics = evaluate(config)
    for method, entry in metrics["methods"].items():
        for split in ("heldout", "all"):
            if split in entry:
                m = entry[split]
                low, high = m["aruc_ci95"]
                print(
                    f"{method:<14} {split:<8} ARUC {m['aruc']:.4f} [{low:.3f}, {high:.3f}]  "
                    f"AUC {m['roc_auc']:.4f}  TPR@1%FPR {m['tpr_at_1pct_fpr']:.3f}"
                )
    print(f"tables and metrics in {config.output_uri}")
    return 0


def _ablation(args: argparse.Namespace) -> int:
    from nf_dist.pipelines.ablation import AblationConfig, run_ablation

    config = _load(AblationConfig, args, "ablation", record_in_output=True)
    for row in run_ablation(config, progress=not args.no_progress):
        held = row.get("heldout_aruc")
        print(
            f"{row['variant']:<24} fingerprints {row['num_fingerprints']:>4}  held-out ARUC "
            f"{'-' if held is None else f'{held:.4f}'}"
        )
    return 0


def _experiment(args: argparse.Namespace) -> int:
    from nf_dist.pipelines.experiment import ExperimentConfig, run_experiment

    config = _load(ExperimentConfig, args, "experiment", record_in_output=True)
    result = run_experiment(config, progress=not args.no_progress)
    print(f"{'set':<22} {'fingerprints':>12} {'held-out ARUC':>14} {'all ARUC':>9} {'detected':>9}")
    detected = result["stealth"].get("detection_rate", {})
    for name, record in result["sets"].items():
        entry = result["methods"].get(name, {})
        rate = detected.get(name, {}).get("mean")
        print(
            f"{name:<22} {record['num_fingerprints']:>12} "
            f"{entry.get('heldout', {}).get('aruc', float('nan')):>14.4f} "
            f"{entry.get('all', {}).get('aruc', float('nan')):>9.4f} "
            f"{'-' if rate is None else f'{rate:.3f}':>9}"
        )
    print(
        f"results in {config.output_uri}"
        + (f", report in {config.report_dir}" if config.report_dir else "")
    )
    return 0


def _tune(args: argparse.Namespace) -> int:
    from nf_dist.pipelines.tune import TuneJobConfig, run_tune

    config = _load(TuneJobConfig, args, "tune", record_in_output=True)
    summary = run_tune(config, progress=not args.no_progress)
    print(
        f"{summary['num_trials']} trials; best {summary['metric']} "
        f"{summary['best_validation_objective']:.4f} with {summary['best_params']}"
    )
    for label, entry in summary.get("test", {}).items():
        if isinstance(entry, dict):
            print(f"test suspects, {label} settings: ARUC {entry['aruc']:.4f}")
    print(f"best config: {summary['best_config_uri']}; results in {config.output_uri}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from nf_dist.pipelines.report import ReportConfig, publish_report

    overrides = []
    for item in args.fingerprints:
        method, sep, uri = item.partition("=")
        if not sep:
            raise NfDistError(f"--fingerprints takes METHOD=URI, got {item!r}")
        overrides.append(f"fingerprints.{method}={uri}")
    if args.evaluation:
        overrides.append(f"evaluation_uri={args.evaluation}")
    if args.output:
        overrides.append(f"output_uri={args.output}")
    config = _load(ReportConfig, args, "report", overrides)
    print(f"wrote {publish_report(config)}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from nf_dist.fingerprint.fingerprint_set import load_fingerprint_set
    from nf_dist.models.checkpoint import load_classifier
    from nf_dist.scoring import summarize
    from nf_dist.verify import model_oracle, verify

    fingerprints = load_fingerprint_set(args.fingerprints)
    labelled = (
        [(s, None) for s in args.suspects]
        + [(s, True) for s in args.positive]
        + [(s, False) for s in args.negative]
    )
    if not labelled:
        raise NfDistError("name at least one suspect checkpoint (or --positive/--negative)")
    rows = []
    trusted = set(args.unsafe_allow_pickle)
    for uri, known in labelled:
        model, _ = load_classifier(uri, unsafe_pickle=uri in trusted)
        verdict = verify(fingerprints, uri, model_oracle(model), args.threshold)
        rows.append(
            {
                "suspect": uri,
                "known_stolen": known,
                "matching_rate": verdict.matching_rate,
                "stolen": verdict.stolen,
            }
        )
    positive = [r["matching_rate"] for r in rows if r["known_stolen"] is True]
    negative = [r["matching_rate"] for r in rows if r["known_stolen"] is False]
    metrics = summarize(positive, negative) if positive and negative else None
    if args.json:
        print(json.dumps({"threshold": args.threshold, "suspects": rows, "metrics": metrics}))
        return 0
    width = max(len(r["suspect"]) for r in rows) + 2
    print(f"{'suspect':<{width}}{'matching rate':>14}  verdict (threshold {args.threshold})")
    for r in rows:
        verdict_text = "STOLEN" if r["stolen"] else "independent"
        print(f"{r['suspect']:<{width}}{r['matching_rate']:>14.3f}  {verdict_text}")
    if metrics is not None:
        print(
            f"ARUC {metrics['aruc']:.4f}  ROC AUC {metrics['roc_auc']:.4f}  "
            f"TPR@1%FPR {metrics['tpr_at_1pct_fpr']:.3f}  "
            f"TPR@5%FPR {metrics['tpr_at_5pct_fpr']:.3f}"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nf-dist`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handlers = {
        "quickstart": _quickstart,
        "verify": _verify,
        "bench": _bench,
        "evaluate": _evaluate,
        "report": _report,
        "ablation": _ablation,
        "experiment": _experiment,
        "tune": _tune,
    }
    try:
        return handlers.get(args.command, _job)(args)
    except NfDistError as exc:
        print(f"nf-dist: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
