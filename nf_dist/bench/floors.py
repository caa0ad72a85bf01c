"""Accuracy floors: a stolen model is a credible theft only if it kept most of the source's
accuracy, and a mirror negative is a fair comparison only if it is about as good as its positive.

A profile's ``floors`` section sets the factors; each model's floor is a factor times a reference
model's test accuracy:

- positives: ``of_source`` x the source's (Knockoff students: ``knockoff_of_source``);
- mirror negatives: ``mirror_of_positive`` x the positive they mirror;
- independent models trained from scratch: ``independent_of_source`` x the source's, the bar the
  source's own recipe clears;
- students of an independent model: ``student_of_teacher`` x their teacher's.

A row may be exempt (``floor_exempt: true`` with a ``floor_reason`` in the catalog), e.g. pruning
at 90%, whose point is to show what is left. Rows below their floor are reported by the build,
never silently kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nf_dist.errors import ConfigError


@dataclass(frozen=True)
class FloorFactors:
    """Shares of a reference model's test accuracy each kind of model must reach."""

    of_source: float = 0.85
    knockoff_of_source: float = 0.70
    mirror_of_positive: float = 0.85
    independent_of_source: float = 0.85
    student_of_teacher: float = 0.85

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not 0 <= value <= 1:
                raise ConfigError(f"floors.{name} must be in [0, 1], got {value}")


@dataclass(frozen=True)
class FloorCheck:
    """One model against its floor (``floor`` None when the row is exempt)."""

    id: str
    test_accuracy: float
    floor: float | None
    reference: str | None
    exempt_reason: str | None = None

    @property
    def below(self) -> bool:
        return self.floor is not None and self.test_accuracy < self.floor


def source_id(rows: Iterable[Mapping[str, Any]]) -> str:
    """The owner's source: the positive trained from scratch without a parent."""
    sources = [
        r["id"]
        for r in rows
        if r["role"] == "positive" and r["attack"] == "scratch" and not r.get("parent")
    ]
    if len(sources) != 1:
        raise ConfigError(f"a benchmark needs exactly one source model, found {sources}")
    return sources[0]


def check_floors(
    rows: Iterable[Mapping[str, Any]],
    factors: FloorFactors,
    exempt: Mapping[str, str],
) -> list[FloorCheck]:
    """Every built row (manifest rows: id, role, attack, parent, mirror_of, test_accuracy)
    against its floor; rows whose reference model is not built yet are left out."""
    table = {r["id"]: r for r in rows}
    source = source_id(table.values())
    checks = []
    for row in table.values():
        if row["id"] == source:
            continue
        if row["role"] == "positive":
            factor = (
                factors.knockoff_of_source if row["attack"] == "knockoff" else factors.of_source
            )
            reference = source
        elif row.get("mirror_of"):
            factor, reference = factors.mirror_of_positive, row["mirror_of"]
        elif row.get("parent"):
            factor, reference = factors.student_of_teacher, row["parent"]
        else:
            factor, reference = factors.independent_of_source, source
        if reference not in table:
            continue
        floor = None if row["id"] in exempt else factor * table[reference]["test_accuracy"]
        checks.append(
            FloorCheck(
                row["id"],
                float(row["test_accuracy"]),
                floor,
                reference,
                exempt.get(row["id"]),
            )
        )
    return checks
