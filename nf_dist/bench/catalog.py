"""The benchmark catalog: every model of a FingerBench profile as a row, read from a data file.

A profile (``nf_dist/bench/catalogs/<name>.yaml``) holds the data sizes, the default width and
stem, named training recipes (with the resources one build task asks for) and the model rows.
:func:`load_profile` validates it before anything runs (duplicate ids, unknown architectures,
attacks, recipes or attack parameters, missing parents, cycles) and resolves each row into a
:class:`~nf_dist.bench.zoo.ZooModel` in build order (parents first).

Example:
    >>> profile = load_profile("smoke")
    >>> [m.id for m in profile.models][:2]
    ['source', 'ftll']
"""

from __future__ import annotations

import graphlib
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from nf_dist.bench.attacks import ATTACKS
from nf_dist.bench.floors import FloorFactors
from nf_dist.bench.zoo import ZooModel
from nf_dist.config import from_dict, merge, read_yaml, to_dict
from nf_dist.data.config import DataConfig
from nf_dist.errors import ConfigError, NfDistError
from nf_dist.models import list_classifiers
from nf_dist.models.training import TrainConfig
from nf_dist.storage.uri import check_name

CATALOG_DIR = Path(__file__).parent / "catalogs"


@dataclass(frozen=True)
class Resources:
    """What one build task asks the Ray cluster for (fractional GPUs share a device)."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0


@dataclass(frozen=True)
class Recipe:
    """A named training recipe: the loop's settings and the task's resources."""

    train: TrainConfig = field(default_factory=TrainConfig)
    resources: Resources = field(default_factory=Resources)
    note: str = ""


@dataclass(frozen=True)
class CatalogRow:
    """One model as written in the catalog file.

    ``arch`` may be omitted for attacks that start from a parent (fine-tuning, pruning, noising,
    adversarial training): the model keeps its parent's architecture. ``width`` overrides the
    profile's width (``arch_width``, else ``width``) for a row that names its architecture, e.g.
    a wider source and its twin; a row without ``arch`` keeps its parent's width.
    """

    id: str
    role: Literal["positive", "negative"]
    attack: str
    recipe: str
    arch: str | None = None
    width: float | None = None
    parent: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    data_half: Literal["a", "b"] = "a"
    seed: int = 0
    mirror_of: str | None = None
    floor_exempt: bool = False
    floor_reason: str = ""


@dataclass(frozen=True)
class ProfileFile:
    """The catalog file's layout."""

    name: str
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    width: float = 1.0
    stem_stride: int = 1
    arch_width: dict[str, float] = field(default_factory=dict)
    arch_stem_stride: dict[str, int] = field(default_factory=dict)
    arch_train: dict[str, dict[str, Any]] = field(default_factory=dict)
    arch_epoch_scale: dict[str, float] = field(default_factory=dict)
    recipes: dict[str, Recipe] = field(default_factory=dict)
    models: tuple[CatalogRow, ...] = ()
    ensembles: tuple[CatalogRow, ...] = ()
    choices: dict[str, Any] = field(default_factory=dict)
    floors: FloorFactors = field(default_factory=FloorFactors)


@dataclass(frozen=True)
class Profile:
    """A resolved benchmark profile: data settings and the models in build order.

    ``models`` are the benchmark (suspects, and the owner's models an evaluation names);
    ``ensembles`` are generation-only models built by the same build and never scored:
    surrogates of the source (``positive``: its students, Knockoff students) and references
    (``negative``: independent models and their students), for methods that optimise against
    many models (conferrable adversarial examples, NaturalFinger with model dropout).
    ``floors`` and ``floor_exempt`` (id -> reason) define the benchmark's accuracy floors
    (:mod:`nf_dist.bench.floors`); ensembles are cheap by design and have none.
    """

    name: str
    description: str
    data: DataConfig
    models: tuple[ZooModel, ...]
    choices: dict[str, Any]
    floors: FloorFactors = field(default_factory=FloorFactors)
    floor_exempt: dict[str, str] = field(default_factory=dict)
    ensembles: tuple[ZooModel, ...] = ()

    @property
    def all_models(self) -> tuple[ZooModel, ...]:
        """The benchmark's models, then the ensembles' (parents before children in each)."""
        return (*self.models, *self.ensembles)

    def by_id(self) -> dict[str, ZooModel]:
        """Every model (benchmark and ensembles) keyed by id."""
        return {m.id: m for m in self.all_models}

    def counts(self) -> dict[str, int]:
        """Models per role."""
        return dict(Counter(m.role for m in self.models))

    def plan(self) -> list[dict[str, Any]]:
        """The resolved benchmark as plain rows (``nf-dist bench plan --json``)."""
        return [to_dict(m) for m in self.models]

    def plans(self) -> dict[str, list[dict[str, Any]]]:
        """The resolved benchmark and ensembles as plain rows (the build's ``profile.json``)."""
        return {"models": self.plan(), "ensembles": [to_dict(m) for m in self.ensembles]}


def profile_names() -> list[str]:
    """The profiles shipped with the package."""
    return sorted(p.stem for p in CATALOG_DIR.glob("*.yaml"))


def profile_path(name_or_path: str) -> Path:
    """A shipped profile's file, or the path itself when it names a YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        return path
    candidate = CATALOG_DIR / f"{name_or_path}.yaml"
    if not candidate.exists():
        raise ConfigError(
            f"unknown benchmark profile {name_or_path!r}; choose one of {profile_names()} "
            "or pass a catalog YAML path"
        )
    return candidate


def load_profile(name_or_path: str, overrides: dict[str, Any] | None = None) -> Profile:
    """Read, validate and resolve a profile (``overrides`` merge into the file first).

    Raises:
        ConfigError: a malformed file or an invalid row; the message names the row and the fix.
    """
    path = profile_path(name_or_path)
    raw = read_yaml(path)
    if overrides:
        raw = merge(raw, overrides)
    spec = from_dict(ProfileFile, raw, where=str(path))
    return resolve(spec)


def resolve(spec: ProfileFile) -> Profile:
    """Validate the rows and resolve recipes, widths and inherited architectures."""
    known_archs = set(list_classifiers())
    every = (*spec.models, *spec.ensembles)
    rows = {row.id: row for row in every}
    duplicates = [name for name, n in Counter(r.id for r in every).items() if n > 1]
    if duplicates:
        raise ConfigError(f"catalog {spec.name}: model id {duplicates[0]!r} appears twice")
    for row in every:
        _check_row(row, rows, spec, known_archs)
    ensemble_ids = {row.id for row in spec.ensembles}
    for row in spec.models:
        if row.parent in ensemble_ids:
            raise ConfigError(
                f"catalog {spec.name}, model {row.id!r}: its parent {row.parent!r} is an "
                "ensemble model; benchmark models derive only from benchmark models"
            )
    for row in spec.ensembles:
        if row.mirror_of is not None or row.floor_exempt:
            raise ConfigError(
                f"catalog {spec.name}, ensemble model {row.id!r}: mirror_of and floor_exempt "
                "belong to benchmark rows (ensembles are never scored and have no floors)"
            )
    _check_arch_settings(spec, known_archs)
    order = _build_order(every)
    resolved: dict[str, ZooModel] = {}
    for model_id in order:
        row = rows[model_id]
        arch = row.arch or resolved[row.parent].arch  # type: ignore[index]
        recipe = spec.recipes[row.recipe]
        resolved[model_id] = ZooModel(
            id=row.id,
            role=row.role,
            attack=row.attack,
            parent=row.parent,
            data_half=row.data_half,
            arch=arch,
            width=resolved[row.parent].width
            if row.arch is None and row.parent
            else row.width or spec.arch_width.get(arch, spec.width),
            stem_stride=resolved[row.parent].stem_stride
            if row.arch is None and row.parent
            else spec.arch_stem_stride.get(arch, spec.stem_stride),
            train=_row_train(recipe.train, row, spec),
            params=dict(row.params),
            seed=row.seed,
            recipe=row.recipe,
            mirror_of=row.mirror_of,
            num_cpus=recipe.resources.num_cpus,
            num_gpus=recipe.resources.num_gpus,
        )
    return Profile(
        spec.name,
        spec.description,
        spec.data,
        tuple(resolved[i] for i in order if i not in ensemble_ids),
        spec.choices,
        spec.floors,
        {row.id: row.floor_reason for row in spec.models if row.floor_exempt},
        tuple(resolved[i] for i in order if i in ensemble_ids),
    )


def _row_train(train: TrainConfig, row: CatalogRow, spec: ProfileFile) -> TrainConfig:
    """The recipe's training settings for ``row``: its seed, and for rows that name their
    architecture (trained from scratch or as students) the profile's ``arch_train`` settings and
    ``arch_epoch_scale`` (small architectures learn slower per epoch than the source's)."""
    if row.arch is None:
        return replace(train, seed=row.seed)
    overrides = spec.arch_train.get(row.arch, {})
    scale = spec.arch_epoch_scale.get(row.arch, 1.0)
    epochs = overrides.get("epochs", train.epochs) * scale
    return replace(train, **{**overrides, "epochs": epochs, "seed": row.seed})


def _check_arch_settings(spec: ProfileFile, known_archs: set[str]) -> None:
    train_fields = set(TrainConfig.__dataclass_fields__) - {"seed"}
    tables: dict[str, dict[str, Any]] = {
        "arch_width": spec.arch_width,
        "arch_stem_stride": spec.arch_stem_stride,
        "arch_train": spec.arch_train,
        "arch_epoch_scale": spec.arch_epoch_scale,
    }
    for name, table in tables.items():
        unknown = sorted(set(table) - known_archs)
        if unknown:
            raise ConfigError(
                f"catalog {spec.name}: {name} names unknown architecture {unknown[0]!r}; "
                f"known: {sorted(known_archs)}"
            )
    for arch, scale in spec.arch_epoch_scale.items():
        if not scale > 0:
            raise ConfigError(f"catalog {spec.name}: arch_epoch_scale.{arch} must be positive")
    for arch, overrides in spec.arch_train.items():
        bad = sorted(set(overrides) - train_fields)
        if bad:
            raise ConfigError(
                f"catalog {spec.name}: arch_train.{arch} sets unknown training field {bad[0]!r}; "
                f"known: {sorted(train_fields)}"
            )
        try:
            replace(TrainConfig(), **overrides)
        except TypeError as exc:
            raise ConfigError(f"catalog {spec.name}: arch_train.{arch}: {exc}") from None


def _check_row(
    row: CatalogRow, rows: dict[str, CatalogRow], spec: ProfileFile, known_archs: set[str]
) -> None:
    where = f"catalog {spec.name}, model {row.id!r}"
    try:
        check_name(row.id, "model id")  # ids become file names under the output
    except NfDistError as exc:
        raise ConfigError(f"catalog {spec.name}: {exc}") from None
    if row.attack not in ATTACKS:
        raise ConfigError(f"{where}: unknown attack {row.attack!r}; known: {ATTACKS.names()}")
    attack = ATTACKS.get(row.attack)
    if row.recipe not in spec.recipes:
        raise ConfigError(
            f"{where}: unknown recipe {row.recipe!r}; the file defines {sorted(spec.recipes)}"
        )
    if row.arch is not None and row.arch not in known_archs:
        raise ConfigError(
            f"{where}: unknown architecture {row.arch!r}; known: {sorted(known_archs)}"
        )
    if attack.needs_parent and row.parent is None:
        raise ConfigError(f"{where}: attack {row.attack!r} needs a parent")
    if not attack.needs_parent and row.parent is not None:
        raise ConfigError(f"{where}: attack {row.attack!r} takes no parent")
    if row.parent is not None and row.parent not in rows:
        raise ConfigError(f"{where}: parent {row.parent!r} is not in the catalog")
    if row.arch is None and row.parent is None:
        raise ConfigError(f"{where}: set `arch` (only models with a parent inherit it)")
    if row.width is not None and (row.arch is None or not row.width > 0):
        raise ConfigError(
            f"{where}: width must be positive and set beside `arch` "
            "(a model without `arch` keeps its parent's width)"
        )
    unknown = sorted(set(row.params) - set(attack.param_names))
    if unknown:
        raise ConfigError(
            f"{where}: attack {row.attack!r} has no parameter {unknown[0]!r}; "
            f"it takes {list(attack.param_names)}"
        )
    if row.floor_exempt and not row.floor_reason.strip():
        raise ConfigError(f"{where}: floor_exempt needs a floor_reason saying why")
    if row.mirror_of is not None:
        target = rows.get(row.mirror_of)
        if target is None or target.role != "positive" or row.role != "negative":
            raise ConfigError(
                f"{where}: mirror_of must name a positive model and belong to a negative one"
            )


def _build_order(rows: tuple[CatalogRow, ...]) -> list[str]:
    """Parents before children, otherwise in file order; a cycle is an error naming its rows."""
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for row in rows:
        sorter.add(row.id, *([row.parent] if row.parent else []))
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        cycle = " -> ".join(exc.args[1])
        raise ConfigError(f"catalog has a parent cycle: {cycle}") from None
    position = {row.id: i for i, row in enumerate(rows)}
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=position.__getitem__)
        order.extend(ready)
        sorter.done(*ready)
    return order
