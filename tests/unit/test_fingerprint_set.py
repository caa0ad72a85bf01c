"""A fingerprint set is untrusted input: every malformed set is refused, naming what is wrong."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from nf_dist.errors import DataError
from nf_dist.fingerprint.fingerprint_set import (
    FingerprintSet,
    load_fingerprint_set,
    save_fingerprint_set,
)


@pytest.fixture
def good(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(6) % 10
    path = tmp_path / "set.parquet"
    save_fingerprint_set(FingerprintSet(images, labels, (labels + 1) % 10), str(path))
    return path


def _rewrite(path: Path, change) -> Path:  # type: ignore[no-untyped-def]
    table = pq.read_table(path)
    changed = change(table)
    out = path.with_name("bad.parquet")
    pq.write_table(changed, out)
    return out


def _png(size: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((size, size, 3), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_good_set_round_trips(good: Path) -> None:
    loaded = load_fingerprint_set(str(good))
    assert loaded.images.shape == (6, 32, 32, 3) and loaded.num_classes == 10


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.set_column(1, "y_orig", pa.array(np.arange(6) + 7, pa.int16())), "outside"),
        (lambda t: t.set_column(0, "img", pa.array([_png(64)] * 6)), "64x64"),
        (lambda t: t.slice(0, 0), "holds no fingerprint"),
        (
            lambda t: t.set_column(0, "img", pa.array([_png(32)] * 5 + [_png(48)])),
            "row 5's image is 48x48",
        ),
        (lambda t: t.set_column(0, "img", pa.array([b"not a png"] * 6)), "does not decode"),
        (
            lambda t: t.replace_schema_metadata({"nf_dist": "{not json"}),
            "metadata 'nf_dist' is not JSON",
        ),
        (
            lambda t: t.set_column(1, "y_orig", pa.array(np.arange(6) * 1.0)),
            "must hold integers",
        ),
        (
            lambda t: t.set_column(1, "y_orig", pa.array([1, None, 2, 3, 4, 5], pa.int16())),
            "empty labels",
        ),
        (
            lambda t: t.replace_schema_metadata({"nf_dist": json.dumps({"num_classes": "ten"})}),
            "num_classes must be an integer",
        ),
    ],
)
def test_a_malformed_set_is_refused_naming_the_problem(
    good: Path,
    change,
    message: str,  # type: ignore[no-untyped-def]
) -> None:
    with pytest.raises(DataError, match=message):
        load_fingerprint_set(str(_rewrite(good, change)))


def test_size_cap_and_missing_or_foreign_files(good: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="more than the 5"):
        load_fingerprint_set(str(good), max_fingerprints=5)
    with pytest.raises(DataError, match="no such fingerprint set"):
        load_fingerprint_set(str(tmp_path / "nope.parquet"))
    with pytest.raises(DataError, match="is a directory"):
        load_fingerprint_set(str(tmp_path))
    (tmp_path / "text.parquet").write_text("hello")
    with pytest.raises(DataError, match="not a Parquet"):
        load_fingerprint_set(str(tmp_path / "text.parquet"))
