"""The layout of a built benchmark under its output URI (a local folder or ``s3://bucket/prefix``).

::

    <uri>/profile.json            the resolved catalog the build was asked for
    <uri>/models/<id>.safetensors weights (safe format only)
    <uri>/models/<id>.json        sidecar: architecture, row, accuracies, sha256
    <uri>/rows/<id>.json          the model's manifest row, written LAST
    <uri>/partial/<id>.pt         epoch checkpoint of a model in training (nf_dist.bench.partial)
    <uri>/manifest.parquet        every committed row, rewritten atomically after each build

A model counts as built only when its row file exists, its weights exist, and their sha256 equals
the one in the row: weights are written first, the row commits them. Each file is written
atomically (temporary name + rename locally, one PUT on S3), so a crash never leaves a model that
looks whole.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Collection
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from nf_dist.errors import NfDistError
from nf_dist.storage.artifacts import same_key
from nf_dist.storage.checkpoints import SIDECAR_SUFFIX, WEIGHTS_SUFFIX
from nf_dist.storage.uri import (
    check_name,
    exists,
    is_remote,
    join,
    join_within,
    read_bytes,
    remove,
    write_bytes_atomic,
)

logger = logging.getLogger(__name__)

MANIFEST_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("role", pa.string()),
        ("arch", pa.string()),
        ("attack", pa.string()),
        ("params", pa.string()),
        ("parent", pa.string()),
        ("mirror_of", pa.string()),
        ("data_half", pa.string()),
        ("seed", pa.int64()),
        ("recipe", pa.string()),
        ("width", pa.float64()),
        ("test_accuracy", pa.float64()),
        ("finetune_accuracy", pa.float64()),
        ("sha256", pa.string()),
        ("bytes", pa.int64()),
        ("wall_s", pa.float64()),
        ("host", pa.string()),
        ("cpu_model", pa.string()),  # timings compare only on the same CPU
        ("precision", pa.string()),  # what the row's precision resolved to where it was built
        ("section", pa.string()),  # "bench" (scored) or "ensemble" (generation only)
        ("agreement_with_source", pa.float64()),  # ensembles: test-set agreement
        ("attempt", pa.int64()),
        ("resumed_epochs", pa.int64()),  # epochs restored from an epoch checkpoint (partial/)
        ("nf_dist_version", pa.string()),
        ("row", pa.string()),
    ]
)


class BenchStore:
    """Paths and commit rules of one benchmark output URI."""

    def __init__(self, uri: str) -> None:
        self.uri = uri.rstrip("/") if is_remote(uri) else uri

    def model_stem(self, model_id: str) -> str:
        """Checkpoint stem of a model (weights at stem + ``.safetensors``)."""
        return join_within(self.uri, "models", check_name(model_id, "model id"))

    def partial_uri(self, model_id: str) -> str:
        """Where a model in training keeps its epoch checkpoint."""
        return join_within(self.uri, "partial", f"{check_name(model_id, 'model id')}.pt")

    def row_uri(self, model_id: str) -> str:
        return join_within(self.uri, "rows", f"{check_name(model_id, 'model id')}.json")

    @property
    def manifest_uri(self) -> str:
        return join(self.uri, "manifest.parquet")

    @property
    def profile_uri(self) -> str:
        return join(self.uri, "profile.json")

    def check_writable(self) -> None:
        """Fail fast, naming the URI, when the location cannot be written (e.g. no bucket)."""
        probe = join(self.uri, ".nf-dist-write-probe")
        try:
            write_bytes_atomic(probe, b"ok")
            remove(probe)
        except Exception as exc:  # noqa: BLE001 - any failure here means "cannot write there"
            raise NfDistError(
                f"cannot write to benchmark output {self.uri}: {type(exc).__name__}: {exc}. "
                "Check that the folder or bucket exists and that credentials (the standard AWS "
                "chain; AWS_ENDPOINT_URL for a non-AWS endpoint) allow writing."
            ) from exc

    def commit_row(self, row: dict[str, Any]) -> None:
        """Write a model's manifest row: the moment the model counts as built."""
        write_bytes_atomic(self.row_uri(row["id"]), json.dumps(row, sort_keys=True).encode())

    def read_row(self, model_id: str) -> dict[str, Any] | None:
        """The committed row of a model, or None when there is none (or it is unreadable)."""
        try:
            row: dict[str, Any] = json.loads(read_bytes(self.row_uri(model_id)))
        except FileNotFoundError:
            return None
        except ValueError:
            logger.warning("%s: unreadable manifest row, will rebuild", self.row_uri(model_id))
            return None
        return row

    def verified_row(self, model_id: str, wanted: Any) -> dict[str, Any] | None:
        """The committed row if the model is complete, was built from the catalog row
        ``wanted`` (compared as typed values, :func:`~nf_dist.storage.artifacts.same_key`) and
        its weights hash to the recorded sha256; else None (the model must be (re)built)."""
        row = self.read_row(model_id)
        if row is None:
            return None
        if not self.built_from(row, wanted):
            logger.info("%s: catalog row changed, will rebuild", model_id)
            return None
        weights = self.model_stem(model_id) + WEIGHTS_SUFFIX
        try:
            blob = read_bytes(weights)
        except FileNotFoundError:
            logger.warning("%s: weights missing, will rebuild", model_id)
            return None
        if hashlib.sha256(blob).hexdigest() != row.get("sha256"):
            logger.warning("%s: weights do not match their checksum, will rebuild", model_id)
            return None
        if not exists(self.model_stem(model_id) + SIDECAR_SUFFIX):
            logger.warning("%s: sidecar missing, will rebuild", model_id)
            return None
        return row

    @staticmethod
    def built_from(row: dict[str, Any], wanted: Any) -> bool:
        """Whether a committed row records the catalog row ``wanted``."""
        try:
            recorded = json.loads(row.get("row") or "null")
        except json.JSONDecodeError:
            return False
        return same_key(recorded, wanted)

    def write_manifest(self, rows: list[dict[str, Any]]) -> None:
        """Rewrite ``manifest.parquet`` from committed rows, sorted by id, atomically."""
        ordered = sorted(rows, key=lambda r: r["id"])
        columns = {name: [r.get(name) for r in ordered] for name in MANIFEST_SCHEMA.names}
        table = pa.table(columns, schema=MANIFEST_SCHEMA)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        write_bytes_atomic(self.manifest_uri, sink.getvalue().to_pybytes())

    def read_manifest(self) -> pa.Table:
        """The manifest table.

        Raises:
            NfDistError: no manifest at this URI (the benchmark was never built there).
        """
        try:
            blob = read_bytes(self.manifest_uri)
        except FileNotFoundError:
            raise NfDistError(
                f"{self.manifest_uri}: no benchmark manifest; build one with "
                f"`nf-dist bench build --output {self.uri}`"
            ) from None
        return pq.read_table(pa.BufferReader(blob))


def built_from_parent(
    row: dict[str, Any], committed: dict[str, dict[str, Any]], rebuilt: Collection[str] = ()
) -> bool:
    """Whether a committed row was derived from the parent weights committed now: its parent is
    committed and hashes to the recorded ``parent_sha256``. A row from before parents were
    recorded (no ``parent_sha256``) is stale only if its parent is rebuilt in this build
    (``rebuilt``, or not committed yet because it is about to be)."""
    parent = row.get("parent")
    if parent is None:
        return True
    if parent not in committed:
        return False
    recorded = row.get("parent_sha256")
    if recorded is None:
        return parent not in rebuilt
    return bool(committed[parent]["sha256"] == recorded)
