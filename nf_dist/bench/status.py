"""Where a benchmark build stands, model by model: built, in training, to rebuild or waiting.

``nf-dist bench status`` reads only what a build writes (committed rows and their weights'
checksums, epoch checkpoints) and writes nothing, so it can watch a build that runs for hours
beside it. A model counts as built exactly when a build would skip it
(:meth:`~nf_dist.bench.store.BenchStore.verified_row` and
:func:`~nf_dist.bench.store.built_from_parent`), and as in training when it has an epoch checkpoint
the next build would resume from (:mod:`nf_dist.bench.partial`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from nf_dist.bench.catalog import Profile
from nf_dist.bench.partial import EpochCheckpoints
from nf_dist.bench.store import BenchStore, built_from_parent
from nf_dist.bench.task import row_key

State = Literal["built", "training", "rebuild", "waiting"]


@dataclass(frozen=True)
class ModelStatus:
    """One model's state.

    Attributes:
        id: the catalog id.
        section: ``bench`` (scored) or ``ensemble`` (generation only).
        state: ``built`` (committed, verified, from the parent committed now); ``training`` (an
            epoch checkpoint a build resumes from); ``rebuild`` (a committed row a build would
            replace: another catalog row, a changed parent or corrupt weights); ``waiting``.
        epochs: the recipe's epochs.
        epochs_done: epochs in the checkpoint (``training``).
        seconds: training seconds, recorded (``built``) or spent so far (``training``).
        test_accuracy: of a built model.
        seconds_left: of a model in training, its epochs to go at its own seconds per epoch so
            far (an estimate: a resumed model's first epoch also loads its data).
    """

    id: str
    section: str
    state: State
    epochs: float
    epochs_done: int | None = None
    seconds: float | None = None
    test_accuracy: float | None = None
    seconds_left: float | None = None


def bench_status(profile: Profile, output_uri: str) -> list[ModelStatus]:
    """Every model of the profile with its state at ``output_uri``, parents first."""
    store = BenchStore(output_uri)
    ensembles = {m.id for m in profile.ensembles}
    committed: dict[str, dict[str, Any]] = {}
    statuses = []
    for model in profile.all_models:
        section = "ensemble" if model.id in ensembles else "bench"
        row = store.verified_row(model.id, model)
        if row is not None and built_from_parent(row, committed):
            committed[model.id] = row
            statuses.append(
                ModelStatus(
                    model.id,
                    section,
                    "built",
                    model.train.epochs,
                    seconds=row.get("wall_s"),
                    test_accuracy=row.get("test_accuracy"),
                )
            )
            continue
        parent_sha256 = committed[model.parent]["sha256"] if model.parent in committed else None
        partial = None
        if model.parent is None or parent_sha256 is not None:
            identity = {"row": row_key(model), "parent_sha256": parent_sha256}
            partial = EpochCheckpoints(store.partial_uri(model.id), identity).peek()
        if partial is not None:
            done, seconds = partial
            left = max(model.train.epochs - done, 0.0) * seconds / done if done else None
            statuses.append(
                ModelStatus(
                    model.id,
                    section,
                    "training",
                    model.train.epochs,
                    done,
                    seconds,
                    seconds_left=left,
                )
            )
        else:
            state: State = "rebuild" if store.read_row(model.id) is not None else "waiting"
            statuses.append(ModelStatus(model.id, section, state, model.train.epochs))
    return statuses


def status_lines(profile: Profile, output_uri: str, statuses: list[ModelStatus]) -> list[str]:
    """A summary line, then one line per model."""
    count = {s: sum(m.state == s for m in statuses) for s in ("built", "training", "rebuild")}
    recorded = sum(m.seconds or 0.0 for m in statuses if m.state == "built")
    lines = [
        f"bench {profile.name} at {output_uri}: {count['built']} of {len(statuses)} built "
        f"({recorded:,.0f}s of recorded training), {count['training']} in training, "
        f"{count['rebuild']} to rebuild, "
        f"{len(statuses) - sum(count.values())} waiting"
    ]
    for m in statuses:
        if m.state == "built":
            detail = f"test acc {m.test_accuracy:.3f}, {m.seconds:,.0f}s"
        elif m.state == "training":
            detail = f"epoch {m.epochs_done} of {m.epochs:g} done, {m.seconds:,.0f}s so far"
            if m.seconds_left is not None:
                detail += f", about {m.seconds_left:,.0f}s to go"
        else:
            detail = f"{m.epochs:g} epochs"
        lines.append(f"  {m.id:<34} {m.section:<8} {m.state:<8} {detail}")
    return lines


def status_json(statuses: list[ModelStatus]) -> list[dict[str, Any]]:
    """The statuses as JSON-ready dicts."""
    return [asdict(m) for m in statuses]
