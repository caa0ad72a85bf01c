"""Read image-classification datasets into memory as uint8 arrays, decoding once and caching.

Sources:
- Parquet with an encoded ``img`` column (PNG/JPEG bytes, or a struct with a ``bytes`` field as
  the Hugging Face Hub writes it) and an integer ``label`` column; a local path or any fsspec URL.
- torchvision's CIFAR-10 folder (``cifar-10-batches-py``), read with a restricted unpickler that
  can only rebuild numpy arrays, so a tampered batch file cannot execute code.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from nf_dist.errors import DataError
from nf_dist.storage.uri import is_remote

logger = logging.getLogger(__name__)

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


@dataclass(frozen=True)
class ImageDataset:
    """Images and labels held in memory.

    Attributes:
        images: ``(N, H, W, 3)`` uint8, RGB.
        labels: ``(N,)`` int64 in ``[0, len(classes))``.
        classes: class names, index = label.
        source: where the data came from (for messages and provenance).
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    source: str

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise DataError(
                f"{self.source}: images must be (N,H,W,3) uint8, got "
                f"{self.images.shape} {self.images.dtype}"
            )
        if len(self.labels) != len(self.images):
            raise DataError(
                f"{self.source}: {len(self.images)} images but {len(self.labels)} labels"
            )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, indices: np.ndarray, name: str = "") -> ImageDataset:
        """The rows at ``indices`` (a view is not kept: arrays are copied)."""
        suffix = f"[{name}]" if name else f"[{len(indices)} rows]"
        return ImageDataset(
            self.images[indices], self.labels[indices], self.classes, self.source + suffix
        )


def _decode(blob: bytes, size: int | None, where: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(blob)) as image:
            rgb = image.convert("RGB")
            if size is not None and rgb.size != (size, size):
                rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{where}: cannot decode image ({exc})") from exc


def _image_bytes(column: pa.ChunkedArray, uri: str) -> list[bytes]:
    if pa.types.is_struct(column.type):  # Hugging Face: struct<bytes: binary, path: string>
        column = pa.chunked_array([chunk.field("bytes") for chunk in column.chunks])
    if not (pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)):
        raise DataError(f"{uri}: column 'img' must hold encoded image bytes, got {column.type}")
    return column.to_pylist()


def read_parquet(uri: str, image_size: int | None = None) -> ImageDataset:
    """Decode a Parquet image dataset (``img`` bytes + ``label``) into memory."""
    try:
        if is_remote(uri):
            fs, path = fsspec.core.url_to_fs(uri)
            with fs.open(path, "rb") as handle:
                table = pq.read_table(handle)
        else:
            table = pq.read_table(uri)
    except FileNotFoundError as exc:
        raise DataError(f"{uri}: no such dataset file; check the path") from exc
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{uri}: not a readable Parquet file ({exc})") from exc
    for column in ("img", "label"):
        if column not in table.column_names:
            raise DataError(
                f"{uri}: missing column {column!r} (found {', '.join(table.column_names)}); "
                "expected an encoded 'img' column and an integer 'label' column"
            )
    metadata = table.schema.metadata or {}
    labels = np.asarray(table.column("label").to_numpy(zero_copy_only=False), dtype=np.int64)
    if b"classes" in metadata:
        classes = tuple(metadata[b"classes"].decode().split(","))
    else:
        classes = tuple(str(i) for i in range(int(labels.max(initial=-1)) + 1))
    blobs = _image_bytes(table.column("img"), uri)
    # disable=None: a bar on a terminal only, never in a log file or a Ray worker's output
    bar = tqdm(blobs, desc=f"decode {Path(uri).name}", leave=False, disable=None)
    images = [_decode(blob, image_size, f"{uri} row {i}") for i, blob in enumerate(bar)]
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise DataError(f"{uri}: images have different sizes {sorted(shapes)[:3]}; set image_size")
    return _checked(
        np.stack(images) if images else np.zeros((0, 1, 1, 3), np.uint8), labels, classes, uri
    )


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and builtins, and nothing else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data batch")
        return super().find_class(module, name)


def read_cifar10_folder(root: str, split: str) -> ImageDataset:
    """Read torchvision's ``cifar-10-batches-py`` folder (``split`` is ``train`` or ``test``)."""
    folder = Path(root)
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    images, labels = [], []
    for name in names:
        path = folder / name
        if not path.exists():
            raise DataError(
                f"{path}: missing CIFAR-10 batch; is {root} a cifar-10-batches-py folder?"
            )
        try:
            with path.open("rb") as handle:
                batch = _NumpyOnlyUnpickler(handle, encoding="latin1").load()
            data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            images.append(data.transpose(0, 2, 3, 1))
            labels.append(np.asarray(batch["labels"], dtype=np.int64))
        except (pickle.UnpicklingError, KeyError, ValueError, EOFError) as exc:
            raise DataError(f"{path}: corrupt CIFAR-10 batch ({exc})") from exc
    return _checked(np.concatenate(images), np.concatenate(labels), CIFAR10_CLASSES, str(folder))


def _checked(
    images: np.ndarray, labels: np.ndarray, classes: tuple[str, ...], where: str
) -> ImageDataset:
    if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
        bad = int(labels[(labels < 0) | (labels >= len(classes))][0])
        raise DataError(f"{where}: label {bad} is out of range for {len(classes)} classes")
    return ImageDataset(np.ascontiguousarray(images), labels, classes, where)


def default_cache_dir() -> Path:
    """``$NF_DIST_CACHE`` or ``~/.cache/nf_dist``."""
    return Path(os.environ.get("NF_DIST_CACHE", Path.home() / ".cache" / "nf_dist"))


def _cache_key(uri: str, split: str, image_size: int | None) -> str:
    stamp = ""
    if not is_remote(uri) and Path(uri).is_file():
        stat = Path(uri).stat()
        stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
    raw = f"{os.path.abspath(uri) if not is_remote(uri) else uri}|{split}|{image_size}|{stamp}"
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


def load_dataset(
    uri: str,
    *,
    split: str = "train",
    image_size: int | None = None,
    cache_dir: str | Path | None = None,
) -> ImageDataset:
    """Load a dataset, decoding it once and caching the arrays as ``.npz``.

    Args:
        uri: a Parquet file (local or fsspec URL) or a ``cifar-10-batches-py`` folder.
        split: for CIFAR-10 folders, ``train`` or ``test``; ignored for Parquet files.
        image_size: resize to ``image_size`` x ``image_size`` (None keeps the stored size).
        cache_dir: where decoded arrays are cached (default :func:`default_cache_dir`).

    Raises:
        DataError: the path does not exist, the file is corrupt, a column is missing, or a label
            is out of range; the message names the file.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cached = cache / f"{_cache_key(uri, split, image_size)}.npz"
    if cached.exists():
        try:
            with np.load(cached, allow_pickle=False) as npz:
                return ImageDataset(
                    npz["images"], npz["labels"], tuple(npz["classes"].tolist()), uri
                )
        except (OSError, ValueError, KeyError):
            logger.warning("ignoring unreadable cache file %s", cached)
    if not is_remote(uri) and not Path(uri).exists():
        raise DataError(f"{uri}: no such file or folder (paths are relative to {Path.cwd()})")
    if not is_remote(uri) and Path(uri).is_dir():
        dataset = read_cifar10_folder(uri, split)
    else:
        dataset = read_parquet(uri, image_size)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, images=dataset.images, labels=dataset.labels, classes=np.array(dataset.classes))
    os.replace(tmp, cached)
    logger.info("decoded %d images from %s (cached at %s)", len(dataset), uri, cached)
    return dataset
