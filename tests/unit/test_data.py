"""Datasets and splits: real CIFAR-10 reading, clear errors, stratified reproducible splits."""

import io
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from nf_dist.data import load_dataset, paper_splits, stratified_split
from nf_dist.data.augment import random_crop_flip, to_input
from nf_dist.errors import DataError


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _write(path: Path, images: list[bytes], labels: list[int], **extra: list) -> None:
    pq.write_table(pa.table({"img": images, "label": labels, **extra}), path)


def test_reads_real_cifar_and_caches(
    cifar_test_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = load_dataset(cifar_test_uri, cache_dir=tmp_path)
    assert "decode" not in capsys.readouterr().err  # no progress bar off a terminal (logs)
    assert data.images.shape == (10_000, 32, 32, 3) and data.images.dtype == np.uint8
    assert np.bincount(data.labels).tolist() == [1000] * 10
    assert data.classes[0] == "airplane"
    assert len(list(tmp_path.glob("*.npz"))) == 1
    again = load_dataset(cifar_test_uri, cache_dir=tmp_path)
    assert np.array_equal(again.images, data.images)


def test_greyscale_becomes_rgb_and_resize(tmp_path: Path) -> None:
    grey = np.arange(64 * 64, dtype=np.uint8).reshape(64, 64)
    path = tmp_path / "g.parquet"
    _write(path, [_png(grey), _png(np.stack([grey] * 3, -1))], [0, 1])
    data = load_dataset(str(path), image_size=32, cache_dir=tmp_path / "cache")
    assert data.images.shape == (2, 32, 32, 3)
    assert np.array_equal(data.images[0, ..., 0], data.images[0, ..., 2])


@pytest.mark.parametrize(
    ("columns", "match"),
    [
        ({"img": [b"notanimage"], "label": [0]}, "cannot decode"),
        ({"picture": [b"x"], "label": [0]}, "missing column 'img'"),
    ],
)
def test_bad_files_name_the_file(tmp_path: Path, columns: dict, match: str) -> None:
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table(columns), path)
    with pytest.raises(DataError, match=match) as info:
        load_dataset(str(path), cache_dir=tmp_path / "cache")
    assert "bad.parquet" in str(info.value)


def test_label_out_of_range(tmp_path: Path) -> None:
    path = tmp_path / "labels.parquet"
    table = pa.table({"img": [_png(np.zeros((4, 4, 3), np.uint8))] * 2, "label": [0, 12]})
    pq.write_table(table.replace_schema_metadata({"classes": "a,b,c"}), path)
    with pytest.raises(DataError, match="label 12 is out of range"):
        load_dataset(str(path), cache_dir=tmp_path / "cache")


def test_missing_and_corrupt_paths(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_dataset(str(tmp_path / "absent.parquet"), cache_dir=tmp_path)
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match="corrupt.parquet"):
        load_dataset(str(corrupt), cache_dir=tmp_path)


def test_cifar_folder_reader_refuses_code(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    data = np.random.default_rng(0).integers(0, 255, (3, 3072), dtype=np.uint8)
    (folder / "test_batch").write_bytes(pickle.dumps({"data": data, "labels": [0, 1, 9]}))
    loaded = load_dataset(str(tmp_path), split="test", cache_dir=tmp_path / "cache")
    assert loaded.images.shape == (3, 32, 32, 3)
    assert np.array_equal(loaded.images[1].transpose(2, 0, 1).reshape(-1), data[1])

    class Evil:
        def __reduce__(self) -> tuple:
            return (Path.touch, (tmp_path / "pwned",))

    (folder / "test_batch").write_bytes(pickle.dumps({"data": Evil(), "labels": [0]}))
    with pytest.raises(DataError, match="corrupt CIFAR-10 batch"):
        load_dataset(str(tmp_path), split="test", cache_dir=tmp_path / "cache2")
    assert not (tmp_path / "pwned").exists()


def test_paper_splits_disjoint_stratified_reproducible() -> None:
    labels = np.repeat(np.arange(10), 500)
    test_labels = np.repeat(np.arange(10), 100)
    parts = paper_splits(labels, test_labels, seed=3)
    assert len(parts["half_a"]) == len(parts["half_b"]) == 2500
    assert len(parts["finetune"]) == len(parts["test"]) == 500
    assert not set(parts["half_a"]) & set(parts["half_b"])
    assert not set(parts["finetune"]) & set(parts["test"])
    for name in ("half_a", "half_b"):
        assert np.bincount(labels[parts[name]]).tolist() == [250] * 10
    again = paper_splits(labels, test_labels, seed=3)
    assert all(np.array_equal(parts[k], again[k]) for k in parts)
    other = paper_splits(labels, test_labels, seed=4)
    assert not np.array_equal(parts["half_a"], other["half_a"])


def test_small_splits_are_nested_and_stratified() -> None:
    labels = np.repeat(np.arange(10), 500)
    full = paper_splits(labels, labels[:1000], seed=0)
    small = paper_splits(
        labels, labels[:1000], seed=0, half_size=1000, finetune_size=100, test_size=100
    )
    assert set(small["half_a"]) <= set(full["half_a"])
    assert np.bincount(labels[small["half_b"]]).tolist() == [100] * 10


def test_stratified_split_rejects_oversize() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        stratified_split(np.zeros(10, int), [6, 6], seed=0)


def test_augmentation_keeps_shape_and_content(rng: np.random.Generator) -> None:
    images = rng.integers(0, 255, (16, 32, 32, 3), dtype=np.uint8)
    out = random_crop_flip(images, pad=4, flip=True, generator=rng)
    assert out.shape == images.shape and out.dtype == np.uint8
    same = random_crop_flip(images, pad=0, flip=False, generator=rng)
    assert np.array_equal(same, images)
    tensor = to_input(images)
    assert tensor.shape == (16, 3, 32, 32) and tensor.min() >= 0 and tensor.max() <= 1
