"""Checkpoints of a latent optimisation: resume a killed run from its last saved step.

Saved every ``checkpoint_every`` steps as a safe checkpoint (safetensors + JSON sidecar, written
atomically, sidecar last): the latents, the SGD momentum buffer, the starting latents and a digest
of the modules optimised against (to check that a resumed run is the same run), the step reached,
the history and the config.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from nf_dist.errors import CheckpointError
from nf_dist.fingerprint.naturalfinger.config import SCREENING_FIELDS, NaturalFingerConfig
from nf_dist.fingerprint.naturalfinger.schedule import GenerationHistory
from nf_dist.storage.artifacts import same_key
from nf_dist.storage.checkpoints import (
    SIDECAR_SUFFIX,
    WEIGHTS_SUFFIX,
    load_checkpoint,
    save_checkpoint,
)
from nf_dist.storage.uri import exists, read_bytes, write_bytes_atomic

logger = logging.getLogger(__name__)


@dataclass
class SavedProgress:
    """A resumable point: continue at ``next_step`` with these latents and optimiser state."""

    next_step: int
    z: torch.Tensor
    optimizer_state: dict[str, Any]
    history: dict[str, list[float]]


def modules_digest(modules: Sequence[nn.Module]) -> str:
    """SHA-256 of the modules' parameters and buffers, in order: which GAN and classifiers a
    descent ran against (the config and starting latents alone do not say; the initial
    selection reads only the positives)."""
    digest = hashlib.sha256()
    for module in modules:
        for name, tensor in module.state_dict().items():
            flat = tensor.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)};".encode())
            digest.update(flat.view(torch.uint8).numpy().tobytes())
        digest.update(b"|")
    return digest.hexdigest()


def save_progress(
    uri: str,
    next_step: int,
    z: torch.Tensor,
    z0: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    history: GenerationHistory,
    config: NaturalFingerConfig,
    models_digest: str | None = None,
) -> None:
    """Write the run's state after ``next_step`` steps (``models_digest``: see
    :func:`modules_digest`)."""
    tensors = {"z": z.detach().cpu(), "z0": z0.detach().cpu()}
    buffer = optimizer.state_dict()["state"].get(0, {}).get("momentum_buffer")
    if buffer is not None:
        tensors["momentum_buffer"] = buffer.detach().cpu()
    meta = {
        "kind": "latent_progress",
        "next_step": next_step,
        "config": asdict(config),
        "history": asdict(history),
        "param_groups": optimizer.state_dict()["param_groups"],
        "models_digest": models_digest,
    }
    save_checkpoint(uri, tensors, meta)


def load_progress(
    uri: str,
    z0: torch.Tensor,
    config: NaturalFingerConfig,
    optimizer: torch.optim.Optimizer,
    models_digest: str | None = None,
) -> SavedProgress | None:
    """The saved state of the same run (same starting latents, same config up to
    :data:`SCREENING_FIELDS`, so a finished run can be re-screened otherwise, same modules when
    both sides name them), else None. A save from before digests were recorded is taken, with a
    warning."""
    if not exists(uri + SIDECAR_SUFFIX):
        return None
    try:
        tensors, meta = load_checkpoint(uri)
    except CheckpointError as exc:
        logger.warning("ignoring unreadable optimisation checkpoint %s: %s", uri, exc)
        return None
    recorded = meta.get("config")
    if isinstance(recorded, dict):
        wanted = asdict(config)
        recorded = {**recorded, **{name: wanted[name] for name in SCREENING_FIELDS}}
    if not same_key(recorded, config) or not torch.equal(tensors["z0"], z0.cpu()):
        logger.warning("%s belongs to another run (config or latents differ); starting over", uri)
        return None
    recorded_models = meta.get("models_digest")
    if models_digest is not None and recorded_models is not None:
        if recorded_models != models_digest:
            logger.warning(
                "%s was optimised against other models (GAN or classifiers differ); starting over",
                uri,
            )
            return None
    elif models_digest is not None:
        logger.warning(
            "%s records no digest of its models (saved by an older nf-dist); resuming it as the "
            "same run",
            uri,
        )
    state: dict[str, Any] = {"state": {}, "param_groups": meta["param_groups"]}
    if "momentum_buffer" in tensors:
        state["state"] = {0: {"momentum_buffer": tensors["momentum_buffer"]}}
    template = optimizer.state_dict()
    state["param_groups"] = [
        {**group, "params": template_group["params"]}
        for group, template_group in zip(meta["param_groups"], template["param_groups"])
    ]
    logger.info("resuming the latent optimisation at step %d from %s", meta["next_step"], uri)
    return SavedProgress(int(meta["next_step"]), tensors["z"], state, meta["history"])


def copy_progress(source_uri: str, target_uri: str) -> None:
    """Start a run at ``target_uri`` from the optimisation saved at ``source_uri`` (a re-screen
    of the same descent with other screening fields), replacing whatever the target holds: a
    re-screen is asked for only when its set is made again, so the target's own progress is
    from an earlier descent (a re-screen never descends further, and copying again is cheap).
    The tensors go first and the sidecar last, as :func:`save_progress` writes them, so a torn
    copy is never taken for a checkpoint."""
    if not exists(source_uri + SIDECAR_SUFFIX):
        raise CheckpointError(
            f"{source_uri}{SIDECAR_SUFFIX}: no saved optimisation to re-screen; generate that "
            "set first"
        )
    for suffix in (WEIGHTS_SUFFIX, SIDECAR_SUFFIX):
        write_bytes_atomic(target_uri + suffix, read_bytes(source_uri + suffix))
