"""A fingerprint set: images with the labels a stolen model should give, stored as Parquet.

Columns: ``img`` (PNG bytes, 8-bit RGB), ``y_orig`` (the label a suspect must match), ``y_adv``
(the label independent models were pushed to), ``latent`` (the generator input, float32 list, empty
for methods without one), ``gen_label`` (the generator's class, -1 for methods without one).
Schema metadata ``nf_dist`` holds JSON: method, resolved config, package version, the label count
(``num_classes``), the image size and extra facts.

A set is untrusted input: :func:`load_fingerprint_set` checks the schema, the metadata, every
image (decodable, RGB, the declared size) and every label (integers, no nulls, in
``[0, num_classes)``) and refuses empty or oversized sets, naming the row and the fix.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image

from nf_dist import __version__
from nf_dist.errors import DataError
from nf_dist.storage.uri import read_bytes, write_bytes_atomic

IMAGE_SHAPE = (32, 32, 3)
#: The most fingerprints a set may hold (a set is queried image by image against an API).
MAX_FINGERPRINTS = 100_000


@dataclass
class FingerprintSet:
    """Images ``(N, 32, 32, 3)`` uint8 plus expected labels and provenance."""

    images: np.ndarray
    y_orig: np.ndarray
    y_adv: np.ndarray
    latents: np.ndarray | None = None
    gen_labels: np.ndarray | None = None
    method: str = "naturalfinger"
    config: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    num_classes: int = 10

    def __len__(self) -> int:
        return len(self.y_orig)

    def inputs(self) -> np.ndarray:
        """The images as stored (uint8 NHWC), what a suspect is queried with."""
        return self.images


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``(N, 3, H, W)`` in [0, 1] -> ``(N, H, W, 3)`` uint8, how fingerprints are stored."""
    pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
    return np.ascontiguousarray(pixels.cpu().numpy())


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def save_fingerprint_set(fingerprints: FingerprintSet, uri: str) -> None:
    """Write a fingerprint set as Parquet (atomically)."""
    n = len(fingerprints)
    latents = fingerprints.latents
    columns = {
        "img": pa.array([_png(im) for im in fingerprints.images], type=pa.binary()),
        "y_orig": pa.array(fingerprints.y_orig.astype(np.int16)),
        "y_adv": pa.array(fingerprints.y_adv.astype(np.int16)),
        "latent": pa.array(
            [list(row) for row in latents.astype(np.float32)] if latents is not None else [[]] * n,
            type=pa.list_(pa.float32()),
        ),
        "gen_label": pa.array(
            fingerprints.gen_labels.astype(np.int16)
            if fingerprints.gen_labels is not None
            else np.full(n, -1, np.int16)
        ),
    }
    images = fingerprints.images
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
        raise DataError(
            f"fingerprint images must be uint8 of shape (N, 32, 32, 3), got {images.dtype} "
            f"{images.shape}"
        )
    meta = {
        "method": fingerprints.method,
        "config": fingerprints.config,
        "info": fingerprints.info,
        "num_classes": fingerprints.num_classes,
        "image_size": IMAGE_SHAPE[0],
        "nf_dist_version": __version__,
    }
    table = pa.table(columns).replace_schema_metadata({"nf_dist": json.dumps(meta)})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    write_bytes_atomic(uri, sink.getvalue())


def load_fingerprint_set(uri: str, *, max_fingerprints: int = MAX_FINGERPRINTS) -> FingerprintSet:
    """Read and validate a fingerprint set written by :func:`save_fingerprint_set`.

    Raises:
        DataError: a missing or non-Parquet file, missing columns, bad metadata, no rows or more
            than ``max_fingerprints``, an image that does not decode or has another size, a
            label that is not an integer in ``[0, num_classes)``; each names what to fix.
    """
    try:
        table = pq.read_table(io.BytesIO(read_bytes(uri)))
    except FileNotFoundError as exc:
        raise DataError(f"{uri}: no such fingerprint set") from exc
    except IsADirectoryError as exc:
        raise DataError(f"{uri} is a directory; give the set's .parquet file") from exc
    except pa.ArrowException as exc:
        raise DataError(f"{uri}: not a Parquet fingerprint set ({exc})") from exc
    missing = {"img", "y_orig"} - set(table.column_names)
    if missing:
        raise DataError(f"{uri}: missing columns {sorted(missing)}; is this a fingerprint set?")
    meta = _metadata(uri, table)
    num_classes = meta.get("num_classes", 10)
    size = meta.get("image_size", IMAGE_SHAPE[0])
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise DataError(f"{uri}: metadata num_classes must be an integer >= 2, got {num_classes!r}")
    if size != IMAGE_SHAPE[0]:
        raise DataError(f"{uri}: images are declared {size!r} pixels; nf-dist sets are 32x32")
    if table.num_rows == 0:
        raise DataError(f"{uri} holds no fingerprint; generate the set again")
    if table.num_rows > max_fingerprints:
        raise DataError(
            f"{uri} holds {table.num_rows} fingerprints, more than the {max_fingerprints} "
            "a set may have; split it or raise max_fingerprints"
        )
    images = np.stack([_decode(uri, i, b) for i, b in enumerate(table.column("img").to_pylist())])
    y_orig = _labels(uri, table, "y_orig", num_classes)
    y_adv = (
        _labels(uri, table, "y_adv", num_classes, allow_unknown=True)
        if "y_adv" in table.column_names
        else np.full_like(y_orig, -1)
    )
    latent_rows = table.column("latent").to_pylist() if "latent" in table.column_names else []
    latents = np.asarray(latent_rows, np.float32) if latent_rows and latent_rows[0] else None
    gen = (
        table.column("gen_label").to_numpy().astype(np.int64)
        if "gen_label" in table.column_names
        else None
    )
    return FingerprintSet(
        images=images,
        y_orig=y_orig,
        y_adv=y_adv,
        latents=latents,
        gen_labels=gen if gen is not None and (gen >= 0).all() else None,
        method=str(meta.get("method", "unknown")),
        config=meta.get("config", {}) if isinstance(meta.get("config"), dict) else {},
        info=meta.get("info", {}) if isinstance(meta.get("info"), dict) else {},
        num_classes=num_classes,
    )


def _metadata(uri: str, table: pa.Table) -> dict[str, Any]:
    raw = (table.schema.metadata or {}).get(b"nf_dist", b"{}")
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{uri}: schema metadata 'nf_dist' is not JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise DataError(f"{uri}: schema metadata 'nf_dist' must be a JSON object")
    return meta


def _decode(uri: str, row: int, blob: Any) -> np.ndarray:
    """One stored image as ``(32, 32, 3)`` uint8, or a DataError naming the row."""
    if not isinstance(blob, bytes):
        raise DataError(f"{uri}: row {row} has no image bytes")
    try:
        image = np.asarray(Image.open(io.BytesIO(blob)).convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{uri}: row {row}'s image does not decode ({exc})") from exc
    if image.shape != IMAGE_SHAPE:
        raise DataError(
            f"{uri}: row {row}'s image is {image.shape[1]}x{image.shape[0]}; every fingerprint "
            "must be 32x32 RGB (re-encode the set at 32x32)"
        )
    return image


def _labels(
    uri: str, table: pa.Table, column: str, num_classes: int, *, allow_unknown: bool = False
) -> np.ndarray:
    """An integer label column with no nulls, every value in ``[0, num_classes)`` (``y_adv``
    may be -1: unknown)."""
    values = table.column(column)
    if not pa.types.is_integer(values.type):
        raise DataError(f"{uri}: column {column} must hold integers, not {values.type}")
    if values.null_count:
        raise DataError(f"{uri}: column {column} has {values.null_count} empty labels")
    labels = values.to_numpy().astype(np.int64)
    low = -1 if allow_unknown else 0
    bad = np.flatnonzero((labels < low) | (labels >= num_classes))
    if len(bad):
        raise DataError(
            f"{uri}: row {int(bad[0])}'s {column} is {int(labels[bad[0]])}, outside "
            f"[0, {num_classes}); the set's labels do not fit its {num_classes} classes"
        )
    return labels


def save_grid(images: np.ndarray, path: str, columns: int = 10) -> None:
    """Save ``(N, H, W, 3)`` uint8 images as one PNG grid (1 px gaps)."""
    n, h, w, _ = images.shape
    rows = max(1, -(-n // columns))
    canvas = np.full((rows * (h + 1) + 1, columns * (w + 1) + 1, 3), 255, np.uint8)
    for index, image in enumerate(images):
        r, c = divmod(index, columns)
        canvas[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + c * (w + 1) : 1 + c * (w + 1) + w] = image
    buffer = io.BytesIO()
    Image.fromarray(canvas).resize(
        (canvas.shape[1] * 2, canvas.shape[0] * 2), Image.Resampling.NEAREST
    ).save(buffer, format="PNG")
    write_bytes_atomic(path, buffer.getvalue())
