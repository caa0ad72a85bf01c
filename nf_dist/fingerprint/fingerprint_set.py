"""A fingerprint set: images with the labels a stolen model should give, stored as Parquet.

Columns: ``img`` (PNG bytes, 8-bit RGB), ``y_orig`` (the label a suspect must match), ``y_adv``
(the label independent models were pushed to), ``latent`` (the generator input, float32 list, empty
for methods without one), ``gen_label`` (the generator's class, -1 for methods without one).
Schema metadata ``nf_dist`` holds JSON: method, resolved config, package version, extra facts.
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
    meta = {
        "method": fingerprints.method,
        "config": fingerprints.config,
        "info": fingerprints.info,
        "nf_dist_version": __version__,
    }
    table = pa.table(columns).replace_schema_metadata({"nf_dist": json.dumps(meta)})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    write_bytes_atomic(uri, sink.getvalue())


def load_fingerprint_set(uri: str) -> FingerprintSet:
    """Read a fingerprint set written by :func:`save_fingerprint_set`."""
    try:
        table = pq.read_table(io.BytesIO(read_bytes(uri)))
    except FileNotFoundError as exc:
        raise DataError(f"{uri}: no such fingerprint set") from exc
    except pa.ArrowInvalid as exc:
        raise DataError(f"{uri}: not a Parquet fingerprint set ({exc})") from exc
    missing = {"img", "y_orig"} - set(table.column_names)
    if missing:
        raise DataError(f"{uri}: missing columns {sorted(missing)}; is this a fingerprint set?")
    raw_meta = (table.schema.metadata or {}).get(b"nf_dist", b"{}")
    meta = json.loads(raw_meta)
    images = np.stack(
        [
            np.asarray(Image.open(io.BytesIO(b)).convert("RGB"))
            for b in table.column("img").to_pylist()
        ]
    )
    y_orig = table.column("y_orig").to_numpy().astype(np.int64)
    y_adv = (
        table.column("y_adv").to_numpy().astype(np.int64)
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
        method=meta.get("method", "unknown"),
        config=meta.get("config", {}),
        info=meta.get("info", {}),
    )


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
