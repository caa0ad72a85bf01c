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
from nf_dist.errors import ConfigError
from nf_dist.models import Classifier
from nf_dist.models.checkpoint import load_classifier


@dataclass
class Benchmark:
    """A built benchmark: its manifest and lazy access to every model by id."""

    uri: str
    manifest: pa.Table

    def ids(self, role: str | None = None) -> list[str]:
        """Model ids, optionally of one role (``positive`` or ``negative``)."""
        rows = self.manifest.to_pylist()
        return [r["id"] for r in rows if role is None or r["role"] == role]

    def row(self, model_id: str) -> dict[str, Any]:
        """The manifest row of a model."""
        for row in self.manifest.to_pylist():
            if row["id"] == model_id:
                return dict(row)
        raise ConfigError(f"{self.uri}: no model {model_id!r} in the manifest")

    def model(self, model_id: str, device: str = "cpu") -> Classifier:
        """Load a model (safe format only; its checksum is verified)."""
        self.row(model_id)
        model, _ = load_classifier(BenchStore(self.uri).model_stem(model_id), device=device)
        return model


def load(uri: str) -> Benchmark:
    """Open a built benchmark at a local folder or ``s3://`` URI.

    Raises:
        NfDistError: no manifest there.
    """
    return Benchmark(uri, BenchStore(uri).read_manifest())


__all__ = ["Benchmark", "load"]
