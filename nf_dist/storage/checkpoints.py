"""Safe checkpoints: safetensors weights plus a JSON sidecar, never pickle.

A checkpoint called ``stem`` is two files: ``stem.safetensors`` (tensors only, which cannot execute
code when loaded) and ``stem.json`` (metadata: what to build, how it was trained, the sha256 of the
weights). The sidecar is written last, so a checkpoint whose sidecar exists is complete; the hash
catches a weights file that was truncated or swapped afterwards.

Suspect models come from untrusted parties. Pickle-based formats (``torch.save``, ``.pt``, ``.pkl``)
can run arbitrary code on load and are refused with :class:`UnsafeCheckpointError`, unless the user
names that very file as trusted (``unsafe_pickle=True`` here; ``--unsafe-allow-pickle FILE`` on the
command line). Even then it is read with torch's restricted ``weights_only`` unpickler, which
rebuilds tensors and containers and refuses anything else, and it still needs its JSON sidecar.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import pickle
import struct
import subprocess
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from nf_dist import __version__
from nf_dist.errors import CheckpointError, UnsafeCheckpointError
from nf_dist.storage.uri import exists, read_bytes, write_bytes_atomic

WEIGHTS_SUFFIX = ".safetensors"
SIDECAR_SUFFIX = ".json"
_PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt", ".tar")


def checkpoint_stem(uri: str) -> str:
    """The stem of a checkpoint given its stem, its weights file or its sidecar."""
    for suffix in (WEIGHTS_SUFFIX, SIDECAR_SUFFIX):
        if uri.endswith(suffix):
            return uri[: -len(suffix)]
    return uri


def git_sha() -> str | None:
    """The current git commit of the source tree, or None outside a checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def save_checkpoint(uri: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> str:
    """Write ``tensors`` and ``meta`` as a checkpoint; returns the stem.

    Args:
        uri: stem, weights path or sidecar path (local or ``s3://``).
        tensors: a state dict; tensors are made contiguous and moved to the CPU.
        meta: JSON-serialisable metadata (architecture, config, accuracy, ...).
    """
    stem = checkpoint_stem(uri)
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    blob = save_safetensors_bytes(cpu)
    sidecar = {
        **meta,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "bytes": len(blob),
        "nf_dist_version": __version__,
        "git_sha": git_sha(),
    }
    write_bytes_atomic(stem + WEIGHTS_SUFFIX, blob)
    write_bytes_atomic(
        stem + SIDECAR_SUFFIX, json.dumps(sidecar, indent=2, sort_keys=True).encode()
    )
    return stem


def _load_trusted_pickle(uri: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A pickle the user vouched for, through torch's restricted unpickler; sidecar required."""
    logging.getLogger(__name__).warning("loading %s as a pickle, as the user allowed", uri)
    stem = uri.rsplit(".", 1)[0] if uri.endswith(_PICKLE_SUFFIXES) else uri
    sidecar_uri = stem + SIDECAR_SUFFIX
    if not exists(sidecar_uri):
        raise CheckpointError(f"{sidecar_uri} is missing: it must describe the model in {uri}")
    blob = read_bytes(uri)
    try:
        loaded = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise UnsafeCheckpointError(
            f"{uri} holds more than tensors (torch's weights_only loader refused it: "
            f"{str(exc).splitlines()[0]}); nf-dist will not run it"
        ) from exc
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise CheckpointError(f"{uri} is not a state dict (names to tensors)")
    meta = _read_sidecar(sidecar_uri)
    if meta.get("sha256") not in (None, hashlib.sha256(blob).hexdigest()):
        raise CheckpointError(f"{uri} does not match the sha256 in {sidecar_uri}")
    return dict(loaded), meta


def _read_sidecar(uri: str) -> dict[str, Any]:
    """A sidecar's JSON object, or a CheckpointError saying what is wrong with it."""
    try:
        meta = json.loads(read_bytes(uri))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{uri} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise CheckpointError(
            f"{uri} must be a JSON object (kind, model, sha256, ...), not {type(meta).__name__}"
        )
    return meta


def _looks_like_safetensors(blob: bytes) -> bool:
    """A safetensors file: 8-byte little-endian header length, then a JSON object."""
    if len(blob) < 9 or blob[8:9] != b"{":
        return False
    return 8 + struct.unpack("<Q", blob[:8])[0] <= len(blob)


def _refuse_unsafe(uri: str, blob: bytes) -> None:
    """Raise UnsafeCheckpointError when ``blob`` is not safetensors but a pickle or zip archive."""
    if _looks_like_safetensors(blob):
        return
    if blob[:1] == b"\x80" or blob[:2] == b"PK" or uri.endswith(_PICKLE_SUFFIXES):
        raise UnsafeCheckpointError(
            f"{uri} is a pickle-based file (torch.save/.pt/.pkl). Loading it could execute "
            "code, so nf-dist refuses it. Ask for the weights as safetensors "
            "(safetensors.torch.save_file) with an nf-dist JSON sidecar, or, only if you trust "
            f"this file, name it: --unsafe-allow-pickle {uri}"
        )


def load_checkpoint(
    uri: str, *, unsafe_pickle: bool = False, expected_sha256: str | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a checkpoint's tensors and sidecar, verifying format and checksum.

    ``unsafe_pickle`` lets this one file be a pickle (see the module docstring).
    ``expected_sha256`` is the weights' hash as a record other than the sidecar has it (a
    benchmark's manifest): the sidecar alone is not trusted, and its hash must agree too.

    Raises:
        UnsafeCheckpointError: the file is a pickle or torch zip archive (and not allowed), or
            an allowed pickle holds more than tensors.
        CheckpointError: a file is missing, the sidecar is not JSON, or the hash does not match.
    """
    if unsafe_pickle and exists(uri) and not _looks_like_safetensors(read_bytes(uri)):
        return _load_trusted_pickle(uri)
    if uri.endswith(_PICKLE_SUFFIXES):
        _refuse_unsafe(uri, b"")
    stem = checkpoint_stem(uri)
    weights_uri, sidecar_uri = stem + WEIGHTS_SUFFIX, stem + SIDECAR_SUFFIX
    if not exists(weights_uri):
        if exists(stem) and not stem.endswith(SIDECAR_SUFFIX):
            _refuse_unsafe(stem, read_bytes(stem))
        raise CheckpointError(f"{weights_uri}: no such checkpoint (expected weights + sidecar)")
    blob = read_bytes(weights_uri)
    _refuse_unsafe(weights_uri, blob)
    if not exists(sidecar_uri):
        raise CheckpointError(
            f"{sidecar_uri} is missing: a checkpoint without its sidecar is incomplete "
            "(it may have been interrupted while writing); rebuild it"
        )
    meta = _read_sidecar(sidecar_uri)
    digest = hashlib.sha256(blob).hexdigest()
    if expected_sha256 is not None and (
        digest != expected_sha256 or meta.get("sha256") != expected_sha256
    ):
        raise CheckpointError(
            f"{weights_uri} does not match the sha256 its manifest records ({expected_sha256[:12]}"
            "...): the weights or their sidecar were replaced; rebuild the model"
        )
    if meta.get("sha256") not in (None, digest):
        raise CheckpointError(
            f"{weights_uri} does not match the sha256 in its sidecar (corrupt or replaced); "
            "rebuild it"
        )
    if not _looks_like_safetensors(blob):
        raise CheckpointError(f"{weights_uri} is not a safetensors file (bad header)")
    try:
        tensors = load_safetensors_bytes(blob)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{weights_uri} is not a valid safetensors file: {exc}") from exc
    return tensors, meta
