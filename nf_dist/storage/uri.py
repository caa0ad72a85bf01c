"""Read and write artefacts by URI: a local path or any fsspec URL such as ``s3://bucket/key``.

Writes are atomic: a local file is written to a temporary name in the same folder and renamed; an
object store PUT is atomic by itself. A crash therefore never leaves a half-written file under the
final name.
"""

from __future__ import annotations

import os
import posixpath
import re
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


#: A name that may become a file name (model ids, set names): letters, digits, ``.``, ``_``,
#: ``-``; no path separators, no leading dot, no ``..``; at most 128 characters.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

#: The mode of every artefact nf-dist writes locally (before the umask).
FILE_MODE = 0o644


def check_name(name: object, what: str = "name") -> str:
    """``name`` if it is safe as a single path component (see :data:`SAFE_NAME`).

    Raises:
        NfDistError: naming ``what`` and the rule.
    """
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name) or ".." in name:
        raise NfDistError(
            f"{what} {name!r} is not a safe name: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, without '..' or path separators"
        )
    return name


def join_within(root: str, *parts: str) -> str:
    """:func:`join`, refusing a result outside ``root`` (``..``, absolute parts, separators
    smuggled into a part): every component a caller takes from data goes through here.

    Raises:
        NfDistError: the path would leave ``root``.
    """
    for part in parts:
        if part.startswith(("/", "\\")) or "\x00" in part:
            raise NfDistError(f"{part!r} would leave {root}: an absolute path or a NUL byte")
    joined = join(root, *parts)
    if is_remote(root):
        base = posixpath.normpath(root.split("://", 1)[1])
        target = posixpath.normpath(joined.split("://", 1)[1])
        inside = target == base or target.startswith(base.rstrip("/") + "/")
    else:
        base_path = Path(root).resolve()
        target_path = Path(joined).resolve()
        inside = target_path == base_path or base_path in target_path.parents
    if not inside:
        raise NfDistError(f"{'/'.join(parts)!r} would leave {root}; refusing to write there")
    return joined


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


def remove(uri: str) -> None:
    """Delete the file at ``uri``; a missing file is not an error."""
    try:
        if not is_remote(uri):
            Path(uri).unlink()
            return
        fs, path = fsspec.core.url_to_fs(uri)
        fs.rm_file(path)
    except FileNotFoundError:
        pass


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
        # mkstemp creates 0600; every artefact gets one mode (0644 less the umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, FILE_MODE & ~umask)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
