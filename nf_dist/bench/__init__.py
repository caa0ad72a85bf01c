"""FingerBench: the benchmark catalog, the attacks, the Ray build and loading a built benchmark.

Example:
    >>> bench = load("runs/bench/smoke")  # doctest: +SKIP
    >>> model = bench.model("ftll")  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from nf_dist.bench.store import BenchStore
from nf_dist.errors import ConfigError, NfDistError
from nf_dist.models import Classifier
from nf_dist.models.checkpoint import load_classifier


@dataclass
class Benchmark:
    """A built benchmark: its manifest and lazy access to every model by id."""

    uri: str
    manifest: pa.Table

    def rows(self, section: str | None = "bench") -> list[dict[str, Any]]:
        """Manifest rows of the benchmark (the default: the suspects evaluations score), of the
        generation-only ``ensemble`` models, or of both (``section=None``), in manifest order."""
        return [
            r
            for r in self.manifest.to_pylist()
            if section is None or (r.get("section") or "bench") == section
        ]

    def ids(self, role: str | None = None, section: str | None = "bench") -> list[str]:
        """Model ids of :meth:`rows`, optionally of one role (``positive`` or ``negative``)."""
        return [r["id"] for r in self.rows(section) if role is None or r["role"] == role]

    def row(self, model_id: str) -> dict[str, Any]:
        """The manifest row of a model."""
        for row in self.manifest.to_pylist():
            if row["id"] == model_id:
                return dict(row)
        raise ConfigError(f"{self.uri}: no model {model_id!r} in the manifest")

    def model(self, model_id: str, device: str = "cpu") -> Classifier:
        """Load a model (safe format only) after checking it against what the build recorded:
        the manifest row must agree with the model's committed row, and the weights must hash
        to the sha256 both record (the sidecar is not trusted alone).

        Raises:
            NfDistError: an unknown id, a manifest and row that disagree, swapped weights.
        """
        expected = self.expected_sha256(model_id)
        return load_classifier(self.stem(model_id), device=device, expected_sha256=expected)[0]

    def stem(self, model_id: str) -> str:
        """The checkpoint stem of a model of the manifest."""
        return BenchStore(self.uri).model_stem(self.row(model_id)["id"])

    def expected_sha256(self, model_id: str) -> str:
        """The weights' hash as the manifest and the committed row both record it."""
        listed = self.row(model_id)
        committed = BenchStore(self.uri).read_row(model_id)
        if committed is None:
            raise NfDistError(
                f"{self.uri}: {model_id!r} is in the manifest but has no committed row; rebuild "
                "it with nf-dist bench build (the same profile and output)"
            )
        for field in ("sha256", "role", "arch", "attack", "parent", "mirror_of"):
            if committed.get(field) != listed.get(field):
                raise NfDistError(
                    f"{self.uri}: the manifest and rows/{model_id}.json disagree on {field} "
                    f"({listed.get(field)!r} vs {committed.get(field)!r}); the benchmark was "
                    "edited after it was built: rebuild it"
                )
        return str(listed["sha256"])


def load(uri: str) -> Benchmark:
    """Open a built benchmark at a local folder or ``s3://`` URI.

    Raises:
        NfDistError: no manifest there.
    """
    return Benchmark(uri, BenchStore(uri).read_manifest())


__all__ = ["Benchmark", "load"]
