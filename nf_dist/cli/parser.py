"""The ``nf-dist`` argument parser: one subcommand per pipeline."""

from __future__ import annotations

import argparse

from nf_dist import __version__

#: ``nf-dist verify --protocol``: the names of nf_dist.verification.http.PROTOCOLS, spelled out
#: so that parsing arguments imports no torch (a test holds the two equal).
PROTOCOL_CHOICES = ("nfdist", "oip-v2", "kserve-v1", "raw-image")


def add_overrides(parser: argparse.ArgumentParser, help_text: str) -> None:
    """``--set KEY=VALUE`` (repeatable) into ``args.overrides``."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=help_text,
    )


def _add_config_args(
    parser: argparse.ArgumentParser, default_help: str, *, smoke: bool = True
) -> None:
    parser.add_argument("--config", help=f"YAML config ({default_help})")
    add_overrides(parser, "override a config value, e.g. --set lr=0.1")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    if not smoke:  # the quickstart is already the smallest whole run
        return
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="start from the command's smoke recipe (nf_dist/configs/smoke/); --config and "
        "--set apply on top",
    )


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
        help="local: the single-process reference; ray: models sharded over Ray actors "
        "(same as --set sharding.backend=...)",
    )
    finger.add_argument(
        "--num-shards", type=int, help="shard actors for --engine ray (sharding.num_shards)"
    )

    bench = sub.add_parser(
        "bench", help="FingerBench: plan, build (on Ray) or follow a build of the benchmark"
    )
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
    add_overrides(build, "override a profile value, e.g. --set data.half_size=5000")
    build.add_argument(
        "--dry-run", action="store_true", help="print the task graph and resources, build nothing"
    )
    build.add_argument("--no-progress", action="store_true", help="hide progress bars")
    status = bench_sub.add_parser(
        "status", help="where a build stands: built, in training (epoch k of n), waiting"
    )
    status.add_argument("--profile", default="smoke", help="paper, cpu, smoke or a catalog YAML")
    status.add_argument("--output", help="the build's output URI (default runs/bench/<profile>)")
    add_overrides(status, "the profile overrides the build was given")
    status.add_argument("--json", action="store_true", help="print one JSON object per model")

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

    verify = sub.add_parser(
        "verify",
        help="check suspects (model files or HTTP APIs) against a fingerprint set: p-values, "
        "verdicts at a chosen false-positive rate, evidence records",
    )
    verify.add_argument(
        "fingerprints", nargs="?", help="fingerprint set (.parquet, local or s3://)"
    )
    verify.add_argument(
        "suspects", nargs="*", help="suspect files: nf-dist checkpoints, .onnx, TorchScript (.ts)"
    )
    verify.add_argument("--config", help="YAML config (keys of VerifyConfig); flags add to it")
    verify.add_argument(
        "--endpoint", action="append", default=[], metavar="URL", help="a deployed suspect's API"
    )
    verify.add_argument(
        "--protocol",
        choices=PROTOCOL_CHOICES,
        help="the --endpoint APIs' protocol (default nfdist; the rest: see endpoint in a config)",
    )
    verify.add_argument(
        "--image-size",
        type=int,
        help="the side of the images the --endpoint APIs expect (fingerprints are resized)",
    )
    verify.add_argument(
        "--calibrate",
        nargs="*",
        default=[],
        metavar="FILE",
        help="checkpoints of independent models you hold: they calibrate the null",
    )
    verify.add_argument("--null", help="a null saved by an earlier run (--save-null)")
    verify.add_argument("--save-null", help="write the calibrated null here (JSON)")
    verify.add_argument(
        "--alpha", type=float, help="false-positive rate of the verdict (default 1e-3)"
    )
    verify.add_argument(
        "--sequential", action="store_true", help="stop querying once the verdict is certain"
    )
    verify.add_argument("--batch", type=int, help="fingerprints per sequential look (default 10)")
    verify.add_argument("--evidence", metavar="DIR", help="write an evidence record per suspect")
    verify.add_argument(
        "--arch",
        help="the suspect files' format: onnx, torchscript, timm:<name>, torchvision:<name> "
        "(default: from the file name)",
    )
    verify.add_argument("--num-classes", type=int, help="outputs of the suspects (default 10)")
    verify.add_argument(
        "--class-names", help="comma-separated class names, when an API answers names"
    )
    verify.add_argument(
        "--token-env", help="environment variable holding the API's bearer token (never logged)"
    )
    verify.add_argument(
        "--unsafe-allow-pickle",
        action="append",
        default=[],
        metavar="FILE",
        help="accept this one suspect file as a pickle (torch.save); only for files you trust. "
        "It is read with torch's weights_only loader and needs a JSON sidecar",
    )
    verify.add_argument(
        "--positive", nargs="*", default=[], help="suspect files known to be stolen (metrics)"
    )
    verify.add_argument(
        "--negative", nargs="*", default=[], help="suspect files known to be independent"
    )
    verify.add_argument("--backend", choices=["local", "ray"], help="ray: one task per suspect")
    verify.add_argument("--json", action="store_true", help="print JSON instead of a table")

    serve = sub.add_parser(
        "serve", help="serve a model as a label-returning JSON API (tests, demos, benchmarks)"
    )
    serve.add_argument("model", help="the model file (any format verify takes)")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--arch", help="the model file's format (as for verify)")
    serve.add_argument("--num-classes", type=int, default=10)
    serve.add_argument("--class-names", help="answer class names (comma-separated), not indices")
    serve.add_argument("--token-env", help="require the bearer token held in this variable")
    serve.add_argument("--fail-429", type=float, default=0.0, help="share of 429 answers")
    serve.add_argument("--fail-500", type=float, default=0.0, help="share of 500 answers")
    serve.add_argument("--malformed", type=float, default=0.0, help="share of malformed bodies")
    serve.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    serve.add_argument("--seed", type=int, default=0, help="seeds the injected faults")
    serve.add_argument(
        "--image-size", type=int, default=32, help="the side every image must have (resized to 32)"
    )
    serve.add_argument("--max-batch", type=int, default=1024, help="most images per request")
    serve.add_argument(
        "--max-queue", type=int, default=8, help="requests waiting for the model before 429"
    )
    serve.add_argument(
        "--max-body-bytes", type=int, default=16 * 1024 * 1024, help="largest request body"
    )
    serve.add_argument(
        "--body-timeout", type=float, default=30.0, help="seconds a client may take to send a body"
    )
    return parser
