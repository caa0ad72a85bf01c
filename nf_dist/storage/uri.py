"""Read and write artefacts by URI: a local path or any fsspec URL such as ``s3://bucket/key``.

Writes are atomic: a local file is written to a temporary name in the same folder and renamed; an
object store PUT is atomic by itself. A crash therefore never leaves a half-written file under the
final name.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import fsspec

from nf_dist.errors import NfDistError


def is_remote(uri: str) -> bool:
    """True for URLs with a scheme other than ``file`` (e.g. ``s3://``)."""
    return "://" in uri and not uri.startswith("file://")


def join(uri: str, *parts: str) -> str:
    """Join path components onto a local path or URL."""
    if is_remote(uri):
        return "/".join([uri.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(uri, *parts))


def absolute_uri(uri: str) -> str:
    """A local path made absolute (URLs are returned unchanged)."""
    return uri if is_remote(uri) else str(Path(uri).resolve())


def exists(uri: str) -> bool:
    """Whether a file exists at ``uri``."""
    if not is_remote(uri):
        return Path(uri).exists()
    fs, path = fsspec.core.url_to_fs(uri)
    return bool(fs.exists(path))


def read_bytes(uri: str) -> bytes:
    """Read a whole file, raising FileNotFoundError with the URI in the message."""
    try:
        if not is_remote(uri):
            return Path(uri).read_bytes()
        fs, path = fsspec.core.url_to_fs(uri)
        return bytes(fs.cat_file(path))
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{uri}: no such file") from exc


def write_bytes_atomic(uri: str, data: bytes) -> None:
    """Write ``data`` to ``uri`` so readers see either nothing or the whole file."""
    if is_remote(uri):
        fs, path = fsspec.core.url_to_fs(uri)
        try:
            fs.pipe_file(path, data)
        except (OSError, PermissionError) as exc:
            raise NfDistError(f"could not write {uri}: {exc}") from exc
        return
    target = Path(uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
