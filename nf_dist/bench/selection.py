"""Which white-box models a job generates from: checkpoint URIs, or ids of a built benchmark."""

from __future__ import annotations

from dataclasses import dataclass

from nf_dist.bench import load
from nf_dist.bench.store import BenchStore
from nf_dist.errors import ConfigError
from nf_dist.models import Classifier
from nf_dist.models.checkpoint import load_classifier


@dataclass(frozen=True)
class ModelSelection:
    """The owner's positive and negative models (the ``models:`` section of a job config).

    Attributes:
        bench_uri: a built benchmark; ``positives`` and ``negatives`` are then its model ids.
            None: they are checkpoint URIs.
        positives: models derived from the owner's source (the source first).
        negatives: independent models.
        screening_positives, screening_negatives: models that only screen a generative
            method's images (never optimised for or against, so they stand for unseen stolen and
            independent ones). Like the others they are generation-side: never scored.
    """

    bench_uri: str | None = None
    positives: tuple[str, ...] = ()
    negatives: tuple[str, ...] = ()
    screening_positives: tuple[str, ...] = ()
    screening_negatives: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        both = sorted(set(self.positives) & set(self.negatives))
        if both:
            raise ConfigError(
                f"models: {both[0]!r} is both a positive and a negative; list it once"
            )
        screening = {*self.screening_positives, *self.screening_negatives}
        optimised = sorted(screening & {*self.positives, *self.negatives})
        if optimised:
            raise ConfigError(
                f"models: {optimised[0]!r} is a screening model and among the positives or "
                "negatives; a screening model is never optimised for or against, so list it once"
            )
        twice = sorted(set(self.screening_positives) & set(self.screening_negatives))
        if twice:
            raise ConfigError(
                f"models: {twice[0]!r} is both a screening positive and negative; list it once"
            )
        roles = (
            ("positives", self.positives),
            ("negatives", self.negatives),
            ("screening_positives", self.screening_positives),
            ("screening_negatives", self.screening_negatives),
        )
        for role, names in roles:
            if len(set(names)) != len(names):
                raise ConfigError(f"models.{role} lists a model twice: {list(names)}")
            if any(not name for name in names):
                raise ConfigError(f"models.{role} has an empty name")

    def require(self) -> None:
        """Fail unless both roles name at least one model."""
        if not self.positives or not self.negatives:
            raise ConfigError(
                "set models.positives and models.negatives (checkpoint URIs, or model ids of the "
                "benchmark at models.bench_uri)"
            )

    @property
    def ids(self) -> tuple[str, ...]:
        """Every model, positives first, the screening-only ones last."""
        return (
            *self.positives,
            *self.negatives,
            *self.screening_positives,
            *self.screening_negatives,
        )

    def uris(self) -> tuple[list[str], list[str]]:
        """Checkpoint URIs of the positives and negatives: as given, or resolved from the ids of
        the benchmark (unknown ids are an error naming them)."""
        if self.bench_uri is None:
            return list(self.positives), list(self.negatives)
        known = set(load(self.bench_uri).ids(section=None))  # ensembles generate too
        missing = [i for i in self.ids if i not in known]
        if missing:
            raise ConfigError(f"{self.bench_uri} has no model {missing[0]!r}; see its manifest")
        store = BenchStore(self.bench_uri)
        return (
            [store.model_stem(i) for i in self.positives],
            [store.model_stem(i) for i in self.negatives],
        )

    def load(self) -> tuple[list[Classifier], list[Classifier]]:
        """The positive and negative models, loaded; benchmark models are verified against the
        manifest (:meth:`~nf_dist.bench.Benchmark.model`)."""
        positives, negatives = self._loaded(self.positives, self.negatives)
        return positives, negatives

    def load_screening(self) -> tuple[list[Classifier], list[Classifier]]:
        """The screening-only positives and negatives, loaded like :meth:`load` loads the
        others."""
        positives, negatives = self._loaded(self.screening_positives, self.screening_negatives)
        return positives, negatives

    def _loaded(self, *groups: tuple[str, ...]) -> list[list[Classifier]]:
        """Each group of names loaded: checkpoint URIs, or verified models of the benchmark."""
        if self.bench_uri is None:
            return [[load_classifier(uri)[0] for uri in group] for group in groups]
        self.uris()  # every id exists
        bench = load(self.bench_uri)
        return [[bench.model(i) for i in group] for group in groups]
