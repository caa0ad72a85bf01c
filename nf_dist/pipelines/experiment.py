"""The paper's main experiments as one command: every method's fingerprints on one benchmark,
evaluated together, the stealthiness detector over several seeds, and the report.

``nf-dist experiment --config jobs/configs/cpu_experiment.yaml`` runs, under ``output_uri``:

1. **Generation** (Figs. 4-7, Fig. 9): each entry of ``sets`` names a registered method, its config
   and, for generative methods, one of the ``gans`` (several NaturalFinger entries with different
   GANs give the GAN-sensitivity comparison). Every method sees the same white-box models
   (``positives``/``negatives``, ids of the benchmark) and the same clean owner images (the test
   split of ``data``). Sets land at ``sets/<name>.parquet`` with ``sets/<name>.json`` (method, GAN,
   config, fingerprint count, wall seconds) written after it; a re-run skips every set whose
   record matches its entry, so a killed experiment resumes.
2. **Evaluation** (:mod:`nf_dist.pipelines.evaluate`) of all sets on every suspect, the
   generation models
   kept out of the held-out metrics.
3. **Stealthiness** (Table 2, :mod:`nf_dist.fingerprint.stealth`): for each seed, a detector
   trained on the
   adversary's fine-tuning images vs Gaussian-noise and FGSM versions (FGSM against the
   adversary's own model, ``stealth.adversary_model``); each set's detection rate, and the clean
   test images' as the false-alarm reference (:mod:`nf_dist.pipelines.stealth`).
   ``evaluation/stealth.json``; the detectors are kept under ``stealth/``.
4. **Report** (:mod:`nf_dist.pipelines.report`) into ``report_dir``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np

from nf_dist import __version__
from nf_dist.bench import load
from nf_dist.bench.selection import ModelSelection
from nf_dist.config import from_dict, to_dict
from nf_dist.data import DataConfig, load_splits
from nf_dist.distributed.engines import ShardingConfig
from nf_dist.errors import ConfigError, FingerprintError
from nf_dist.fingerprint.fingerprint_set import (
    load_fingerprint_set,
    save_fingerprint_set,
)
from nf_dist.fingerprint.methods import METHODS
from nf_dist.fingerprint.naturalfinger import Checkpointing
from nf_dist.fingerprint.naturalfinger.config import SCREENING_FIELDS
from nf_dist.fingerprint.naturalfinger.progress import copy_progress
from nf_dist.pipelines.evaluate import EvaluateConfig, run_evaluate
from nf_dist.pipelines.fingerprint import MOVED_KEYS, OwnerAssets, generate_set
from nf_dist.pipelines.report import write_report
from nf_dist.pipelines.stealth import Adversary, StealthConfig, measure_stealth
from nf_dist.pipelines.tune.split import split_models
from nf_dist.storage.artifacts import plain_key, same_key, sibling
from nf_dist.storage.checkpoints import WEIGHTS_SUFFIX, git_sha
from nf_dist.storage.uri import (
    check_name,
    exists,
    join,
    join_within,
    read_bytes,
    write_bytes_atomic,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SetSpec:
    """One fingerprint set to generate: a registered ``method``, its ``config`` (the fields of the
    method's config class) and, for generative methods, the key of one of the experiment's
    ``gans``.

    ``rescreen_of`` names an earlier NaturalFinger set whose settings differ from this one's
    only in screening fields (:data:`~nf_dist.fingerprint.naturalfinger.config.SCREENING_FIELDS`):
    this set then starts from that set's finished optimisation and only screens it otherwise
    (its ``wall_s`` counts the re-screen alone)."""

    method: str = "naturalfinger"
    gan: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    rescreen_of: str | None = None


@dataclass(frozen=True)
class ExperimentConfig:
    """``nf-dist experiment`` (see the module docstring).

    Attributes:
        output_uri: the folder of the sets, the evaluation and the run record.
        report_dir: where the report goes (None: no report).
        data: the owner's data (clean test images for the baselines that start from real data).
        gans: name -> GAN checkpoint, for the generative sets.
        models: the benchmark and its generation models (``models.bench_uri`` is required).
        sets: name -> the set to generate (see :class:`SetSpec`).
        sharding: where NaturalFinger's model gradients are computed; also the Ray cluster the
            evaluation joins (``sharding.address``).
        bootstrap: resamples of the ARUC intervals.
        budgets: query budgets of the budget curves (each at most every set's
            ``num_fingerprints``).
        validation_fraction, validation_split_seed: the suspects that chose the settings (the
            split ``nf-dist tune`` makes with the same generation models, fraction and seed) are
            scored apart as ``validation`` and never count in the held-out headline; 0: none.
        validation_models: those suspects named instead (wins over ``validation_fraction``),
            for settings chosen on a split made elsewhere (e.g. with other generation models).
        stealth: the adversary's detector.
    """

    MOVED_KEYS: ClassVar[dict[str, str]] = MOVED_KEYS

    output_uri: str = "runs/experiment"
    report_dir: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    gans: dict[str, str] = field(default_factory=dict)
    models: ModelSelection = field(default_factory=ModelSelection)
    sets: dict[str, SetSpec] = field(default_factory=dict)
    sharding: ShardingConfig = field(default_factory=ShardingConfig)
    bootstrap: int = 1000
    budgets: tuple[int, ...] = ()
    validation_fraction: float = 0.0
    validation_split_seed: int = 0
    validation_models: tuple[str, ...] = ()
    stealth: StealthConfig = field(default_factory=StealthConfig)

    def __post_init__(self) -> None:
        if any(b < 1 for b in self.budgets):
            raise ConfigError(f"budgets must be positive counts, got {list(self.budgets)}")
        if not 0 <= self.validation_fraction < 1:
            raise ConfigError(
                f"validation_fraction must be in [0, 1) (0: no validation split), got "
                f"{self.validation_fraction}"
            )


def set_uri(config: ExperimentConfig, name: str) -> str:
    """Where the set called ``name`` lives."""
    return join_within(config.output_uri, "sets", f"{check_name(name, 'set name')}.parquet")


def validate(config: ExperimentConfig) -> dict[str, Any]:
    """Check everything that can be checked before any work; returns each set's typed config.

    Raises:
        ConfigError: no benchmark, sets or models; an unknown method, GAN key or config field.
    """
    if not config.models.bench_uri:
        raise ConfigError("experiment needs models.bench_uri (a built benchmark)")
    if not config.sets:
        raise ConfigError("experiment needs sets: {name: {method: ..., config: {...}}}")
    config.models.require()
    config.models.uris()  # the ids exist in the benchmark
    typed: dict[str, Any] = {}
    for name, spec in config.sets.items():
        method = METHODS.get(spec.method)
        typed[name] = from_dict(method.config_class, spec.config, where=f"sets.{name}.config")
        if spec.gan is not None and spec.gan not in config.gans:
            raise ConfigError(
                f"sets.{name}.gan is {spec.gan!r}; the experiment's gans are {sorted(config.gans)}"
            )
        if method.needs_gan and spec.gan is None:
            raise ConfigError(
                f"sets.{name}: {spec.method} needs gan: <one of {sorted(config.gans)}>"
            )
        if spec.gan is not None and not exists(config.gans[spec.gan] + WEIGHTS_SUFFIX):
            raise ConfigError(
                f"sets.{name}: its GAN gans.{spec.gan} ({config.gans[spec.gan]}) has no "
                "checkpoint; train it first (`nf-dist gan train --set output_uri=...`) or drop "
                "the set"
            )
        if spec.rescreen_of is not None:
            _check_rescreen(config, name, typed)
        wanted = getattr(typed[name], "num_fingerprints", None)
        too_large = [b for b in config.budgets if wanted is not None and b > wanted]
        if too_large:
            raise ConfigError(
                f"budgets: budget {too_large[0]} is larger than the {wanted} fingerprints "
                f"sets.{name} asks for; lower the budget or raise its num_fingerprints"
            )
    return typed


def run_experiment(config: ExperimentConfig, *, progress: bool = True) -> dict[str, Any]:
    """Generate (or reuse) every set, evaluate, measure stealthiness, write the report.

    Returns the evaluation metrics with ``sets`` (each set's record) and ``stealth`` added.
    """
    typed = validate(config)
    bench_uri = config.models.bench_uri
    assert bench_uri is not None  # validate() requires it
    wall: dict[str, float] = {}
    started = time.perf_counter()
    splits = load_splits(config.data, with_query=False)
    bench = load(bench_uri)
    # a generation model rebuilt since a set was made makes that set stale
    model_sha256 = {i: bench.row(i)["sha256"] for i in config.models.ids}
    records = {
        name: _ensure_set(config, name, spec, typed[name], splits.test, model_sha256, progress)
        for name, spec in config.sets.items()
    }
    wall["generation"] = time.perf_counter() - started
    made = [name for name, record in records.items() if "failure" not in record]
    if not made:
        raise FingerprintError(
            "no set produced fingerprints: "
            + "; ".join(f"{n}: {r['failure']}" for n, r in records.items())
        )
    evaluation_uri = join(config.output_uri, "evaluation")
    write_bytes_atomic(join(evaluation_uri, "sets.json"), json.dumps(records, indent=2).encode())
    smallest = min(records[name]["num_fingerprints"] for name in made)
    budgets = tuple(b for b in config.budgets if b <= smallest)
    if budgets != config.budgets:
        small = min(made, key=lambda name: records[name]["num_fingerprints"])
        logger.warning(
            "set %s kept only %d fingerprints: budgets %s are not evaluated",
            small,
            smallest,
            [b for b in config.budgets if b > smallest],
        )
    started = time.perf_counter()
    metrics = run_evaluate(
        EvaluateConfig(
            bench_uri=bench_uri,
            fingerprints={name: set_uri(config, name) for name in made},
            generation_models=config.models.ids,
            validation_models=validation_models(config),
            output_uri=evaluation_uri,
            backend=config.sharding.backend,
            address=config.sharding.address,
            bootstrap=config.bootstrap,
            budgets=budgets,
        )
    )
    wall["evaluation"] = time.perf_counter() - started
    started = time.perf_counter()
    stealth = _stealth(config, made, splits)
    write_bytes_atomic(join(evaluation_uri, "stealth.json"), json.dumps(stealth, indent=2).encode())
    wall["stealth"] = time.perf_counter() - started
    run_record = {
        "config": to_dict(config),
        "nf_dist_version": __version__,
        "git_sha": git_sha(),
        "wall_s": {stage: round(seconds, 1) for stage, seconds in wall.items()},
        "budgets_evaluated": list(budgets),
    }
    write_bytes_atomic(
        join(evaluation_uri, "experiment.json"), json.dumps(run_record, indent=2).encode()
    )
    if config.report_dir is not None:
        write_report(evaluation_uri, config.report_dir, {n: set_uri(config, n) for n in made})
    return {**metrics, "sets": records, "stealth": stealth, "budgets_evaluated": list(budgets)}


def validation_models(config: ExperimentConfig) -> tuple[str, ...]:
    """The suspects that chose the settings (``validation_models``, else a
    ``validation_fraction`` split); () when none."""
    if config.validation_fraction == 0 and not config.validation_models:
        return ()
    assert config.models.bench_uri is not None  # validate() requires it
    rows = load(config.models.bench_uri).manifest.to_pylist()
    return split_models(
        rows,
        config.models.ids,
        config.validation_models,
        config.validation_fraction,
        config.validation_split_seed,
    ).validation


def _check_rescreen(config: ExperimentConfig, name: str, typed: dict[str, Any]) -> None:
    """``sets.<name>.rescreen_of`` names an earlier set of the same GAN and the same settings
    up to screening fields (``typed`` holds the sets validated so far, in order)."""
    spec = config.sets[name]
    parent = spec.rescreen_of
    where = f"sets.{name}.rescreen_of"
    if parent not in typed:
        raise ConfigError(
            f"{where} is {parent!r}; it must name a set listed before {name!r} "
            f"(listed before it: {sorted(typed) or 'none'})"
        )
    other = config.sets[parent]
    if spec.method != "naturalfinger" or other.method != "naturalfinger" or spec.gan != other.gan:
        raise ConfigError(
            f"{where}: only a NaturalFinger set of the same GAN can be re-screened "
            f"({spec.method}/{spec.gan} vs {other.method}/{other.gan})"
        )
    ours, theirs = asdict(typed[name]), asdict(typed[parent])
    differ = sorted(k for k in ours if ours[k] != theirs[k] and k not in SCREENING_FIELDS)
    if differ:
        raise ConfigError(
            f"{where}: {name!r} differs from {parent!r} in {differ[0]!r}, which changes the "
            f"optimisation; only screening fields ({', '.join(SCREENING_FIELDS)}) may differ"
        )


def _ensure_set(
    config: ExperimentConfig,
    name: str,
    spec: SetSpec,
    settings: Any,
    clean: Any,
    model_sha256: dict[str, str],
    progress: bool,
) -> dict[str, Any]:
    """Generate the set unless its record says it is there with the same spec and the same
    generation models (``model_sha256``)."""
    uri = set_uri(config, name)
    record_uri = uri.removesuffix(".parquet") + ".json"  # what the set was made with
    gan_uri = config.gans.get(spec.gan) if spec.gan else None
    wanted = {
        "method": spec.method,
        "gan": spec.gan,
        "gan_uri": gan_uri,
        "config": settings,
        "positives": list(config.models.positives),
        "negatives": list(config.models.negatives),
        "model_sha256": model_sha256,
    }
    for group in ("screening_positives", "screening_negatives"):
        if getattr(config.models, group):  # absent otherwise, so earlier records still match
            wanted[group] = list(getattr(config.models, group))
    if spec.rescreen_of is not None:
        wanted["rescreen_of"] = spec.rescreen_of
    if exists(record_uri) and exists(uri):
        earlier: dict[str, Any] = json.loads(read_bytes(record_uri))
        if same_key({k: earlier.get(k) for k in wanted}, wanted):
            logger.info("set %s is already at %s; skipping", name, uri)
            return earlier
        logger.info("set %s changed since it was generated; generating again", name)
    started = time.perf_counter()
    record: dict[str, Any] = plain_key(wanted)
    if spec.rescreen_of is not None:
        parent_progress = sibling(set_uri(config, spec.rescreen_of), "progress")
        copy_progress(parent_progress, sibling(uri, "progress"))
    try:
        fingerprints = generate_set(
            spec.method,
            settings,
            OwnerAssets(config.models, gan_uri, clean),
            config.sharding,
            progress=progress,
            checkpointing=Checkpointing(sibling(uri, "progress")),
        )
        save_fingerprint_set(fingerprints, uri)
        record["num_fingerprints"] = len(fingerprints)
    except FingerprintError as exc:  # recorded, and the other sets still run
        logger.warning("set %s produced no fingerprint: %s", name, exc)
        record.update(num_fingerprints=0, failure=str(exc))
    record["wall_s"] = round(time.perf_counter() - started, 1)
    if "failure" not in record:
        write_bytes_atomic(record_uri, json.dumps(record, indent=2).encode())
        logger.info(
            "set %s: %d fingerprints in %.0fs", name, record["num_fingerprints"], record["wall_s"]
        )
    return record


def _stealth(config: ExperimentConfig, names: list[str], splits: Any) -> dict[str, Any]:
    """Detection rate of the sets ``names`` and of 1,000 clean test images (the false-alarm
    reference); {} when no seed is asked for."""
    if not config.stealth.seeds:
        return {}
    assert config.models.bench_uri is not None  # validate() requires it
    images = {name: load_fingerprint_set(set_uri(config, name)).images for name in names}
    clean = splits.test
    rng = np.random.default_rng(0)
    images["clean test images"] = clean.images[rng.choice(len(clean), min(1000, len(clean)), False)]
    adversary = Adversary(
        config.models.bench_uri,
        config.stealth.adversary_model or config.models.positives[0],
        splits.finetune,
        to_dict(config.data),
    )
    return measure_stealth(config.stealth, adversary, images, join(config.output_uri, "stealth"))
