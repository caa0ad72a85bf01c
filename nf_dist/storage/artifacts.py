"""One rule for artefacts: where their siblings live, what is recorded beside them, and when an
artefact already built answers a request.

- **Siblings** of an output (its optimisation progress, PNG preview, run record) are named here
  and nowhere else (:func:`sibling`).
- **Records**: every job writes one record beside its output: the resolved config, the package
  version, the git SHA, the command line and the machine (:func:`write_record`). Folder outputs
  hold it as ``config.yaml``; file outputs beside them as ``<stem>.config.yaml``.
- **Reuse or build**: an artefact is reused when the key recorded with it equals the key of the
  request, compared as typed values (:func:`same_key`): a config field added later with its
  default does not invalidate what was built before, and anything else that differs does.
  Zoo models, benchmark rows, experiment sets, quickstart fingerprints, latent progress and GAN
  checkpoints all decide this way (the benchmark verifies its sha256 on top).
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, Literal

import yaml

from nf_dist import __version__
from nf_dist.config import from_dict, to_dict
from nf_dist.errors import ConfigError
from nf_dist.hardware import machine_record
from nf_dist.storage.checkpoints import git_sha
from nf_dist.storage.uri import join, write_bytes_atomic

Sibling = Literal["progress", "preview", "record"]
_SUFFIXES: dict[str, str] = {"progress": ".progress", "preview": ".png", "record": ".config.yaml"}
_FILE_SUFFIXES = (".parquet", ".safetensors", ".json")


def _stem(output_uri: str) -> str:
    for suffix in _FILE_SUFFIXES:
        if output_uri.endswith(suffix):
            return output_uri[: -len(suffix)]
    return output_uri


def sibling(output_uri: str, kind: Sibling) -> str:
    """Where an output's ``kind`` sibling lives: ``<stem>.progress`` (a checkpoint stem),
    ``<stem>.png`` or ``<stem>.config.yaml``."""
    return _stem(output_uri) + _SUFFIXES[kind]


def record_uri(output_uri: str, *, folder: bool) -> str:
    """Where the run record of an output goes: inside a folder output, beside a file output."""
    return join(output_uri, "config.yaml") if folder else sibling(output_uri, "record")


def write_record(config: Any, uri: str) -> None:
    """Write the resolved config, package version, git SHA, command line and machine (CPU model
    and flags, the precisions resolved) to ``uri`` (atomically). Call it only once the config
    has been validated and the run is done (so the record holds the precisions it used)."""
    record = {
        "nf_dist_version": __version__,
        "git_sha": git_sha(),
        "argv": sys.argv,
        "machine": machine_record(),
        "config": to_dict(config),
    }
    write_bytes_atomic(uri, yaml.safe_dump(record, sort_keys=False).encode())


def plain_key(key: Any) -> Any:
    """A key as it is recorded (JSON/YAML-safe: dataclasses become dicts, tuples lists)."""
    if dataclasses.is_dataclass(key) and not isinstance(key, type):
        return to_dict(key)
    if isinstance(key, dict):
        return {k: plain_key(v) for k, v in key.items()}
    if isinstance(key, (list, tuple)):
        return [plain_key(v) for v in key]
    return key


def same_key(recorded: Any, wanted: Any) -> bool:
    """Whether an artefact recorded with ``recorded`` answers a request for ``wanted``.

    Dataclass parts of ``wanted`` compare as typed values (``recorded`` is read back through
    the same type); mappings and sequences compare part by part; anything else by equality.
    """
    if dataclasses.is_dataclass(wanted) and not isinstance(wanted, type):
        try:
            return bool(from_dict(type(wanted), recorded) == wanted)
        except (ConfigError, TypeError):  # a field since removed or renamed, or a bad record
            return False
    if isinstance(wanted, dict):
        return (
            isinstance(recorded, dict)
            and recorded.keys() == wanted.keys()
            and all(same_key(recorded[k], wanted[k]) for k in wanted)
        )
    if isinstance(wanted, (list, tuple)):
        return (
            isinstance(recorded, (list, tuple))
            and len(recorded) == len(wanted)
            and all(same_key(a, b) for a, b in zip(recorded, wanted))
        )
    return bool(recorded == wanted)
