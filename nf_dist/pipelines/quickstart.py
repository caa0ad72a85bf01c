"""The main job on one machine: zoo, GAN, NaturalFinger fingerprint, verification, report.

``nf-dist quickstart`` runs this on embedded defaults (``nf_dist/configs/quickstart.yaml``): the
shared CIFAR-10, local files, the CPU. Every stage caches its artefact under ``output_dir``, so a
second run only re-verifies.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ray
import torch

from nf_dist import __version__
from nf_dist.bench.build import BuildConfig, build_bench
from nf_dist.bench.catalog import Profile
from nf_dist.bench.floors import FloorFactors
from nf_dist.bench.store import BenchStore
from nf_dist.bench.zoo import BuiltModel, ZooModel, validate_zoo
from nf_dist.data import DataConfig, load_splits
from nf_dist.errors import ConfigError, DataError
from nf_dist.fingerprint.fingerprint_set import (
    FingerprintSet,
    load_fingerprint_set,
    save_fingerprint_set,
    save_grid,
)
from nf_dist.fingerprint.methods import METHODS, FingerprintContext
from nf_dist.fingerprint.methods.base import RunOptions
from nf_dist.fingerprint.naturalfinger import Checkpointing, NaturalFingerConfig
from nf_dist.hardware import free_cpus
from nf_dist.models.checkpoint import load_classifier
from nf_dist.models.gan import GanTrainConfig, gan_test_accuracy, save_sample_grid, train_gan
from nf_dist.models.gan.train import load_gan
from nf_dist.scoring import summarize
from nf_dist.storage.artifacts import record_uri, same_key, sibling, write_record
from nf_dist.verification import model_oracle, verify

logger = logging.getLogger(__name__)

PACKAGE = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = PACKAGE / "configs" / "quickstart.yaml"
#: The GAN checkpoint shipped with the package (how it was made: nf_dist/assets/gan/README.md).
SHIPPED_GAN = str(PACKAGE / "assets" / "gan" / "gan64")


@dataclass(frozen=True)
class QuickstartGan:
    """The quickstart's GAN: the shipped checkpoint, or one trained here with ``train``.

    Attributes:
        checkpoint: a GAN checkpoint stem, loaded through the safe checkpoint path (default: the
            one shipped in ``nf_dist/assets/gan``, trained once by ``nf-dist gan train``).
        retrain: ignore ``checkpoint`` and train a GAN afresh with ``train`` (minutes to hours
            on a CPU, by ``train.steps``).
        train: the recipe used when retraining (defaults: the shipped checkpoint's recipe).
    """

    checkpoint: str = SHIPPED_GAN
    retrain: bool = False
    train: GanTrainConfig = field(default_factory=GanTrainConfig)


@dataclass(frozen=True)
class QuickstartConfig:
    """The whole quickstart: data, the zoo, the GAN, the fingerprint and the decision threshold.

    Attributes:
        num_threads: torch threads of this process (0: the CPUs it may run on).
        zoo_cpus: CPUs of the embedded Ray that builds the zoo, one model per CPU at a time (0:
            all of the machine's; ignored when joining a running cluster via ``RAY_ADDRESS``).
    """

    output_dir: str = "runs/quickstart"
    data: DataConfig = field(default_factory=DataConfig)
    models: tuple[ZooModel, ...] = ()
    gan: QuickstartGan = field(default_factory=QuickstartGan)
    fingerprint: NaturalFingerConfig = field(default_factory=NaturalFingerConfig)
    threshold: float = 0.5
    num_threads: int = 0
    zoo_cpus: int = 0

    def __post_init__(self) -> None:
        for name in ("num_threads", "zoo_cpus"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0 (0: all), got {getattr(self, name)}")


@dataclass
class QuickstartResult:
    """Matching rates per suspect and the headline metrics."""

    rows: list[dict[str, Any]]
    heldout: dict[str, float]
    all_models: dict[str, float]
    stage_seconds: dict[str, float]
    gan_test_accuracy: float
    num_fingerprints: int
    report_path: str


def _timed(stages: dict[str, float], name: str, started: float) -> float:
    now = time.perf_counter()
    stages[name] = round(now - started, 2)
    return now


def run_quickstart(config: QuickstartConfig, *, progress: bool = True) -> QuickstartResult:
    """Run every stage, reusing cached artefacts; returns the verification results."""
    # the cores this process may use, not the machine's: an oversubscribed core spins
    torch.set_num_threads(config.num_threads or free_cpus())
    if not config.models:
        raise DataError("quickstart config lists no models; see nf_dist/configs/quickstart.yaml")
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    stages: dict[str, float] = {}
    clock = time.perf_counter()

    splits = load_splits(config.data, with_query=False)
    clock = _timed(stages, "data", clock)

    zoo = _zoo(config, out, progress)
    clock = _timed(stages, "zoo", clock)

    gan_uri = _gan(config, splits.half_a, out, progress)
    generator, _, _ = load_gan(gan_uri)
    save_sample_grid(generator, str(out / "gan_samples.png"))
    source = zoo[config.models[0].id].model
    quality = gan_test_accuracy(generator, source)
    clock = _timed(stages, "gan", clock)

    fingerprints = _fingerprint(config, zoo, gan_uri, out, progress)
    save_grid(fingerprints.images, str(out / "fingerprints.png"))
    clock = _timed(stages, "fingerprint", clock)

    rows = []
    for built in zoo.values():
        verdict = verify(fingerprints, built.row.id, model_oracle(built.model), config.threshold)
        rows.append(
            {
                "id": built.row.id,
                "role": built.row.role,
                "use": built.row.use,
                "attack": built.row.attack,
                "arch": built.row.arch,
                "test_accuracy": round(built.test_accuracy, 4),
                "matching_rate": verdict.matching_rate,
                "stolen": verdict.stolen,
            }
        )
    heldout = _metrics([r for r in rows if r["use"] == "heldout"])
    every = _metrics(rows)
    _timed(stages, "verify", clock)
    report = out / "report.md"
    result = QuickstartResult(rows, heldout, every, stages, quality, len(fingerprints), str(report))
    report.write_text(render_report(config, result, fingerprints))
    (out / "result.json").write_text(json.dumps(asdict(result), indent=2))
    write_record(config, record_uri(str(out), folder=True))
    return result


def _zoo(config: QuickstartConfig, out: Path, progress: bool) -> dict[str, BuiltModel]:
    """Build the zoo the way FingerBench is built: one Ray task per model (each on one CPU, so a
    2-core machine trains two small models at once, 1.3x faster than one after the other with
    two threads each), parents first, resumable; then load every model here."""
    validate_zoo(config.models)
    # The quickstart's zoo is a small demonstration, not a benchmark: no accuracy floors.
    no_floors = FloorFactors(0.0, 0.0, 0.0, 0.0, 0.0)
    profile = Profile(
        "quickstart", "the quickstart's zoo", config.data, config.models, {}, no_floors
    )
    joined_ray = ray.is_initialized()
    build = BuildConfig(
        profile="quickstart",
        output_uri=str(out),
        num_cpus=config.zoo_cpus or None,
        progress=progress,
    )
    try:
        report = build_bench(build, profile)  # starts Ray only if a model is missing
    finally:
        if not joined_ray and ray.is_initialized():
            ray.shutdown()  # frees the workers' memory before the fingerprint stage
    store = BenchStore(str(out))
    built = {}
    for row in config.models:
        model, meta = load_classifier(store.model_stem(row.id))
        built[row.id] = BuiltModel(
            row,
            model,
            float(meta["test_accuracy"]),
            float(meta["seconds"]),
            row.id in report.skipped,
        )
    return built


def _gan(config: QuickstartConfig, owner_data: Any, out: Path, progress: bool) -> str:
    """The GAN checkpoint to use: the configured one, or one trained on the owner's half."""
    if not config.gan.retrain:
        logger.info("using the GAN checkpoint %s", config.gan.checkpoint)
        return config.gan.checkpoint
    uri = str(out / "gan")
    train_gan(owner_data.images, owner_data.labels, config.gan.train, uri, progress=progress)
    return uri


def _fingerprint(
    config: QuickstartConfig,
    zoo: dict[str, BuiltModel],
    gan_uri: str,
    out: Path,
    progress: bool,
) -> FingerprintSet:
    uri = str(out / "fingerprint.parquet")

    def chosen(use: str, role: str) -> list[str]:
        return [b.row.id for b in zoo.values() if b.row.use == use and b.row.role == role]

    # Recorded in the set as the fingerprint job records them (verify reads the negatives).
    models = {
        "positives": chosen("generation", "positive"),
        "negatives": chosen("generation", "negative"),
        "screening_positives": chosen("screening", "positive"),
        "screening_negatives": chosen("screening", "negative"),
    }
    generator, discriminator, gan_meta = load_gan(gan_uri)
    wanted = {"config": config.fingerprint, **models, "gan_sha256": gan_meta.get("sha256")}
    if Path(uri).exists():
        cached = load_fingerprint_set(uri)
        recorded = {
            "config": cached.config,
            **{k: cached.info.get(k) for k in wanted if k != "config"},
        }
        if same_key(recorded, wanted):
            logger.info("reusing fingerprint set %s", uri)
            return cached
    context = FingerprintContext(
        positives=[zoo[i].model for i in models["positives"]],
        negatives=[zoo[i].model for i in models["negatives"]],
        screening_positives=[zoo[i].model for i in models["screening_positives"]],
        screening_negatives=[zoo[i].model for i in models["screening_negatives"]],
        generator=generator,
        discriminator=discriminator,
        z_dim=int(gan_meta["spec"]["z_dim"]),
        num_classes=int(gan_meta["spec"]["num_classes"]),
        progress=progress,
    )
    # The optimisation is checkpointed: a killed run resumes, and a finished one re-screened with
    # other screening settings does not descend again.
    run = RunOptions(checkpointing=Checkpointing(sibling(uri, "progress")))
    fingerprints = METHODS.get("naturalfinger")().generate(context, config.fingerprint, run)
    fingerprints.info.update(**models, gan_sha256=gan_meta.get("sha256"))
    save_fingerprint_set(fingerprints, uri)
    return fingerprints


def _metrics(rows: list[dict[str, Any]]) -> dict[str, float]:
    positive = [r["matching_rate"] for r in rows if r["role"] == "positive"]
    negative = [r["matching_rate"] for r in rows if r["role"] == "negative"]
    if not positive or not negative:
        return {}
    return summarize(positive, negative)


def render_report(
    config: QuickstartConfig, result: QuickstartResult, fingerprints: FingerprintSet
) -> str:
    """A short Markdown report: the verdict table, metrics, timings and the fingerprint grid."""
    lines = [
        "# nf-dist quickstart report",
        "",
        f"nf-dist {__version__}; {len(fingerprints)} NaturalFinger fingerprints; "
        f"decision threshold {config.threshold}; CPU-profile models (narrow, short training).",
        "",
        "## Suspects",
        "",
        "| id | role | use | attack | arch | test acc | matching rate | judged stolen |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result.rows:
        lines.append(
            f"| {r['id']} | {r['role']} | {r['use']} | {r['attack']} | {r['arch']} | "
            f"{r['test_accuracy']:.3f} | {r['matching_rate']:.3f} | {r['stolen']} |"
        )
    lines += ["", "## Metrics", "", "| metric | held-out suspects | all models |", "|---|---|---|"]
    for key in (
        "aruc",
        "roc_auc",
        "tpr_at_1pct_fpr",
        "tpr_at_5pct_fpr",
        "num_positive",
        "num_negative",
    ):
        lines.append(
            f"| {key} | {result.heldout.get(key, float('nan')):.4f} | "
            f"{result.all_models.get(key, float('nan')):.4f} |"
        )
    lines += [
        "",
        "Held-out suspects were not used to generate or screen the fingerprints.",
        "",
        f"GAN-test accuracy (share of G(z, y) the source labels y): {result.gan_test_accuracy:.3f}",
        "",
        "## Wall time (seconds)",
        "",
        *(f"- {name}: {seconds:.1f}" for name, seconds in result.stage_seconds.items()),
        "",
        "## Fingerprints",
        "",
        "![fingerprints](fingerprints.png)",
        "",
        "![GAN samples, one row per class](gan_samples.png)",
        "",
    ]
    return "\n".join(lines)


def format_table(result: QuickstartResult) -> str:
    """A plain-text table for the terminal."""
    width = max([len("suspect"), *(len(r["id"]) for r in result.rows)]) + 2
    header = f"{'suspect':<{width}}{'role':<10}{'use':<11}{'attack':<10}{'acc':>6}{'MR':>7}  stolen"
    body = [
        f"{r['id']:<{width}}{r['role']:<10}{r['use']:<11}{r['attack']:<10}"
        f"{r['test_accuracy']:>6.3f}{r['matching_rate']:>7.3f}  {r['stolen']}"
        for r in result.rows
    ]
    summary = (
        f"held-out ARUC {result.heldout.get('aruc', float('nan')):.4f}  "
        f"(all models {result.all_models.get('aruc', float('nan')):.4f}); "
        f"{result.num_fingerprints} fingerprints; GAN-test accuracy "
        f"{result.gan_test_accuracy:.3f}; report: {result.report_path}"
    )
    return "\n".join([header, *body, summary])
