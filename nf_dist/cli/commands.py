"""What each ``nf-dist`` subcommand does: load its config, run its pipeline, print the outcome.

Handlers import their pipeline when they run: torch and Ray take seconds to import, and
``nf-dist --help`` or a bad flag should not pay for them. A job's run record (config, version,
git SHA, command line) is written beside its outputs once the run has succeeded, so a failing
command never overwrites a previous run's record.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from nf_dist.config import from_dict, load_config, parse_overrides, read_yaml
from nf_dist.errors import NfDistError

T = TypeVar("T")
SMOKE_DIR = Path(__file__).resolve().parents[1] / "configs" / "smoke"


def load(cls: type[T], args: argparse.Namespace, recipe: str, overrides: Sequence[str] = ()) -> T:
    """The command's config: its defaults, the smoke recipe with ``--smoke``, ``--config``, then
    ``--set`` (validated on load)."""
    base = None
    if getattr(args, "smoke", False):
        path = SMOKE_DIR / f"{recipe}.yaml"
        if not path.exists():
            raise NfDistError(f"`{recipe}` has no smoke recipe (looked for {path})")
        base = read_yaml(path)
    return load_config(cls, args.config, [*args.overrides, *overrides], base=base)


def record(config: Any, *, folder: bool) -> None:
    """Write the run record beside (or, for a folder, inside) ``config.output_uri``."""
    from nf_dist.storage.artifacts import record_uri, write_record  # start-up: torch

    write_record(config, record_uri(config.output_uri, folder=folder))


def quickstart(args: argparse.Namespace) -> int:
    from nf_dist.pipelines import quickstart as job  # start-up cost: torch

    base = read_yaml(job.DEFAULT_CONFIG) if args.config is None else None
    config = load_config(job.QuickstartConfig, args.config, args.overrides, base=base)
    result = job.run_quickstart(config, progress=not args.no_progress)
    print(job.format_table(result))
    return 0


def train_gan_or_fingerprint(args: argparse.Namespace) -> int:
    from nf_dist.pipelines import fingerprint, train  # start-up cost: torch and Ray

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
        overrides.append(f"sharding.backend={args.engine}")
    if getattr(args, "num_shards", None) is not None:
        overrides.append(f"sharding.num_shards={args.num_shards}")
    config = load(config_cls, args, args.command, overrides)
    result = run(config, progress=not args.no_progress)
    record(config, folder=False)
    if args.command == "train":
        print(f"saved {config.output_uri} (test accuracy {result:.4f})")
    elif args.command == "gan":
        print(f"saved {config.output_uri} and sample grid {result}")
    else:
        print(f"saved {len(result)} fingerprints to {config.output_uri}")
    return 0


def bench(args: argparse.Namespace) -> int:
    from nf_dist.pipelines import bench as job  # start-up cost: torch and Ray

    overrides = parse_overrides(getattr(args, "overrides", []))
    if getattr(args, "smoke", False):
        args.profile = "smoke"
    profile = job.load_profile(args.profile, overrides)
    if args.bench_command == "plan":
        print(job.plan_json(profile) if args.json else "\n".join(job.plan_lines(profile)))
        return 0
    output_uri = args.output or f"runs/bench/{profile.name}"
    if args.bench_command == "status":
        statuses = job.bench_status(profile, output_uri)
        if args.json:
            print(json.dumps(job.status_json(statuses), indent=1))
        else:
            print("\n".join(job.status_lines(profile, output_uri, statuses)))
        return 0
    only = tuple(args.only)
    if args.dry_run:
        graph, summary = job.dry_run(profile, only)
        print(graph)
        print(summary, file=sys.stderr)
        return 0
    config = job.BuildConfig(
        profile=args.profile,
        output_uri=output_uri,
        address=args.address,
        num_cpus=args.num_cpus,
        max_retries=args.max_retries,
        only=only,
        metrics_port=args.metrics_port,
        profile_overrides=overrides,
        progress=not args.no_progress,
    )
    report = job.build_bench(config)
    print("\n".join(job.describe_build(profile, config, report)))
    return 0


def evaluate(args: argparse.Namespace) -> int:
    from nf_dist.pipelines.evaluate import EvaluateConfig, run_evaluate  # start-up: torch, Ray

    config = load(EvaluateConfig, args, "evaluate")
    metrics = run_evaluate(config)
    record(config, folder=True)
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


def ablation(args: argparse.Namespace) -> int:
    from nf_dist.pipelines.ablation import AblationConfig, run_ablation  # start-up: torch, Ray

    config = load(AblationConfig, args, "ablation")
    rows = run_ablation(config, progress=not args.no_progress)
    record(config, folder=True)
    for row in rows:
        held = row.get("heldout_aruc")
        print(
            f"{row['variant']:<24} fingerprints {row['num_fingerprints']:>4}  held-out ARUC "
            f"{'-' if held is None else f'{held:.4f}'}"
        )
    return 0


def experiment(args: argparse.Namespace) -> int:
    from nf_dist.pipelines.experiment import ExperimentConfig, run_experiment  # torch, Ray

    config = load(ExperimentConfig, args, "experiment")
    result = run_experiment(config, progress=not args.no_progress)
    record(config, folder=True)
    print(f"{'set':<22} {'fingerprints':>12} {'held-out ARUC':>14} {'all ARUC':>9} {'detected':>9}")
    detected = result["stealth"].get("detection_rate", {})
    for name, entry_record in result["sets"].items():
        entry = result["methods"].get(name, {})
        rate = detected.get(name, {}).get("mean")
        print(
            f"{name:<22} {entry_record['num_fingerprints']:>12} "
            f"{entry.get('heldout', {}).get('aruc', float('nan')):>14.4f} "
            f"{entry.get('all', {}).get('aruc', float('nan')):>9.4f} "
            f"{'-' if rate is None else f'{rate:.3f}':>9}"
        )
    print(
        f"results in {config.output_uri}"
        + (f", report in {config.report_dir}" if config.report_dir else "")
    )
    return 0


def tune(args: argparse.Namespace) -> int:
    from nf_dist.pipelines.tune import TuneJobConfig, run_tune  # start-up cost: torch and Ray

    config = load(TuneJobConfig, args, "tune")
    summary = run_tune(config, progress=not args.no_progress)
    record(config, folder=True)
    print(
        f"{summary['num_trials']} trials; best {summary['metric']} "
        f"{summary['best_validation_objective']:.4f} with {summary['best_params']}"
    )
    for label, entry in summary.get("test", {}).items():
        if isinstance(entry, dict):
            print(f"test suspects, {label} settings: ARUC {entry['aruc']:.4f}")
    print(f"best config: {summary['best_config_uri']}; results in {config.output_uri}")
    return 0


def report(args: argparse.Namespace) -> int:
    from nf_dist.pipelines.report import ReportConfig, publish_report  # start-up cost: plots

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
    config = load(ReportConfig, args, "report", overrides)
    print(f"wrote {publish_report(config)}")
    return 0


def verify(args: argparse.Namespace) -> int:
    from nf_dist.pipelines import verify as job  # start-up cost: torch

    config = verify_config(args, job)
    result = job.run_verify(config)
    if args.json:
        print(json.dumps(result))
        return 0
    rows = result["suspects"]
    width = max(len(r["suspect"]) for r in rows) + 2
    print(
        f"{'suspect':<{width}}{'match':>7}{'queries':>9}{'p-value':>11}  verdict at "
        f"false-positive rate {config.alpha:g}"
    )
    for r in rows:
        verdict = "STOLEN" if r["stolen"] else "independent"
        print(
            f"{r['suspect']:<{width}}{r['matching_rate']:>7.3f}{r['queries']:>9}"
            f"{r['p_value']:>11.2e}  {verdict}"
        )
    metrics = result["metrics"]
    if metrics is not None:
        print(
            f"ARUC {metrics['aruc']:.4f}  ROC AUC {metrics['roc_auc']:.4f}  "
            f"TPR@1%FPR {metrics['tpr_at_1pct_fpr']:.3f}"
        )
    if config.evidence_dir:
        print(f"evidence records in {config.evidence_dir}")
    return 0


def verify_config(args: argparse.Namespace, job: Any) -> Any:
    """``--config`` (if any) with the command line's suspects and settings added."""
    base = read_yaml(args.config) if args.config else {}
    names = args.class_names.split(",") if args.class_names else []
    num_classes = args.num_classes or (len(names) if names else 10)

    def file(uri: str, known: str | None) -> dict[str, Any]:
        spec = {"uri": uri, "format": args.arch or "", "num_classes": num_classes}
        spec["unsafe_pickle"] = uri in args.unsafe_allow_pickle
        return {"file": spec, "known": known}

    suspects = list(base.get("suspects", []))
    suspects += [file(uri, None) for uri in args.suspects]
    suspects += [file(uri, "stolen") for uri in args.positive]
    suspects += [file(uri, "independent") for uri in args.negative]
    for url in args.endpoint:
        endpoint = {"url": url, "num_classes": num_classes, "class_names": names}
        if args.token_env:
            endpoint["token_env"] = args.token_env
        if args.protocol:
            endpoint["protocol"] = args.protocol
        if args.image_size:
            endpoint["image"] = {"size": args.image_size}
        suspects.append({"endpoint": endpoint})
    flags = {
        "fingerprints": args.fingerprints,
        "null_uri": args.null,
        "save_null_uri": args.save_null,
        "alpha": args.alpha,
        "batch": args.batch,
        "evidence_dir": args.evidence,
        "backend": args.backend,
    }
    data = {**base, **{k: v for k, v in flags.items() if v is not None}, "suspects": suspects}
    if args.calibrate:
        data["calibration"] = [*base.get("calibration", []), *args.calibrate]
    if args.sequential:
        data["sequential"] = True
    return from_dict(job.VerifyConfig, data)


def serve(args: argparse.Namespace) -> int:
    from nf_dist.pipelines import serve as job  # start-up cost: torch, uvicorn

    names = tuple(args.class_names.split(",")) if args.class_names else ()
    config = from_dict(
        job.ServeConfig,
        {
            "model": {
                "uri": args.model,
                "format": args.arch or "",
                "num_classes": args.num_classes,
            },
            "host": args.host,
            "port": args.port,
            "token_env": args.token_env,
            "class_names": list(names),
            "faults": {
                "rate_429": args.fail_429,
                "rate_500": args.fail_500,
                "malformed": args.malformed,
                "delay_s": args.delay,
                "seed": args.seed,
            },
            "limits": {
                "image_size": args.image_size,
                "max_batch": args.max_batch,
                "max_queue": args.max_queue,
                "max_body_bytes": args.max_body_bytes,
                "body_timeout_s": args.body_timeout,
            },
        },
    )
    job.run_serve(config)
    return 0


HANDLERS = {
    "quickstart": quickstart,
    "train": train_gan_or_fingerprint,
    "gan": train_gan_or_fingerprint,
    "fingerprint": train_gan_or_fingerprint,
    "bench": bench,
    "evaluate": evaluate,
    "ablation": ablation,
    "experiment": experiment,
    "tune": tune,
    "report": report,
    "verify": verify,
    "serve": serve,
}
