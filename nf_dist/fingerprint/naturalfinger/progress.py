"""Checkpoints of a latent optimisation: resume a killed run from its last saved step.

Saved every ``checkpoint_every`` steps as a safe checkpoint (safetensors + JSON sidecar, written
atomically, sidecar last): the latents, the SGD momentum buffer, the starting latents (to check
that a resumed run is the same run), the step reached, the history and the config.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import torch

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


def save_progress(
    uri: str,
    next_step: int,
    z: torch.Tensor,
    z0: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    history: GenerationHistory,
    config: NaturalFingerConfig,
) -> None:
    """Write the run's state after ``next_step`` steps."""
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
    }
    save_checkpoint(uri, tensors, meta)


def load_progress(
    uri: str, z0: torch.Tensor, config: NaturalFingerConfig, optimizer: torch.optim.Optimizer
) -> SavedProgress | None:
    """The saved state of the same run (same starting latents, same config up to
    :data:`SCREENING_FIELDS`, so a finished run can be re-screened otherwise), else None."""
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
    of the same descent with other screening fields); nothing is done if the target has one
    already. The tensors go first and the sidecar last, as :func:`save_progress` writes them,
    so a torn copy is never taken for a checkpoint."""
    if exists(target_uri + SIDECAR_SUFFIX):
        return
    if not exists(source_uri + SIDECAR_SUFFIX):
        raise CheckpointError(
            f"{source_uri}{SIDECAR_SUFFIX}: no saved optimisation to re-screen; generate that "
            "set first"
        )
    for suffix in (WEIGHTS_SUFFIX, SIDECAR_SUFFIX):
        write_bytes_atomic(target_uri + suffix, read_bytes(source_uri + suffix))
