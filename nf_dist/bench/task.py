"""One model's build task: train it (resuming from its epoch checkpoint), save, commit its row.

Runs inside a Ray worker (:func:`build_task`) or in-process (:func:`build_one`); the driver that
schedules these tasks is :mod:`nf_dist.bench.build`.
"""

from __future__ import annotations

import json
import logging
import socket
from typing import Any

import ray
import torch

from nf_dist import __version__
from nf_dist.bench.partial import EpochCheckpoints
from nf_dist.bench.store import BenchStore
from nf_dist.bench.zoo import ZooModel, build_model
from nf_dist.config import to_dict
from nf_dist.data.config import Splits
from nf_dist.hardware import cpu_facts, resolve_precision
from nf_dist.models.checkpoint import load_classifier, save_classifier
from nf_dist.models.inference import accuracy
from nf_dist.storage.checkpoints import SIDECAR_SUFFIX
from nf_dist.storage.uri import read_bytes


def row_key(model: ZooModel) -> str:
    """The canonical text of a resolved row; a committed model is reused only if it matches."""
    return json.dumps(to_dict(model), sort_keys=True)


def build_one(
    row: ZooModel, splits: Splits, output_uri: str, attempt: int, progress: bool = False
) -> dict[str, Any]:
    """Build, save and commit one model; returns its manifest row. Runs inside a Ray task."""
    store = BenchStore(output_uri)
    threads = max(1, int(row.num_cpus))
    torch.set_num_threads(threads)
    device = "cuda" if row.num_gpus > 0 and torch.cuda.is_available() else "cpu"
    parent, parent_sha256 = None, None
    if row.parent is not None:
        parent, parent_sidecar = load_classifier(store.model_stem(row.parent), device=device)
        parent_sha256 = parent_sidecar["sha256"]
    key = row_key(row)
    checkpoints = EpochCheckpoints(
        store.partial_uri(row.id), {"row": key, "parent_sha256": parent_sha256}, row.train.epochs
    )
    model, test_acc, seconds = build_model(
        row, parent, splits, progress=progress, device=device, checkpoints=checkpoints
    )
    finetune_acc = accuracy(model, splits.finetune, device=device)
    stem = save_classifier(
        model,
        store.model_stem(row.id),
        row=json.loads(key),
        test_accuracy=test_acc,
        finetune_accuracy=finetune_acc,
        seconds=seconds,
    )
    sidecar = json.loads(read_bytes(stem + SIDECAR_SUFFIX))
    manifest_row = {
        "id": row.id,
        "role": row.role,
        "arch": row.arch,
        "attack": row.attack,
        "params": json.dumps(row.params, sort_keys=True),
        "parent": row.parent,
        "parent_sha256": parent_sha256,  # a rebuilt parent makes this row stale
        "mirror_of": row.mirror_of,
        "data_half": row.data_half,
        "seed": row.seed,
        "recipe": row.recipe,
        "width": row.width,
        "test_accuracy": test_acc,
        "finetune_accuracy": finetune_acc,
        "sha256": sidecar["sha256"],
        "bytes": sidecar["bytes"],
        "wall_s": round(seconds, 3),
        "host": socket.gethostname(),
        "cpu_model": cpu_facts().model,
        "precision": resolve_precision(row.train.precision, device),
        "attempt": attempt,
        "resumed_epochs": checkpoints.resumed_epochs,
        "nf_dist_version": __version__,
        "row": key,
    }
    store.commit_row(manifest_row)
    checkpoints.clear()
    return manifest_row


@ray.remote(max_retries=0)
def build_task(
    row: ZooModel, splits: Splits, output_uri: str, attempt: int
) -> dict[str, Any]:  # pragma: no cover - runs in a Ray worker
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return build_one(row, splits, output_uri, attempt)
