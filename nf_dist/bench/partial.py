"""Epoch-boundary checkpoints of a model being built, so that a stopped build resumes mid-model.

A from-scratch or student row can train for an hour or more on a CPU. After every full epoch its
task writes ``<uri>/partial/<id>.pt`` (one atomic write; see :mod:`nf_dist.bench.store`); the next
build of the same row, from the same parent weights, loads it and trains on from that epoch with
the data order, augmentation, optimiser, torch's global generator (dropout) and the attack's own
(PGD starts) where they were, so the resumed model equals the uninterrupted one on a CPU (on a
GPU the CUDA generator and kernels are not replayed: equivalent, not identical). A partial
written for another row or parent, or one that does not fit the model, is ignored and replaced;
a committed model deletes its partial.

Loading uses ``torch.load(weights_only=True)``: tensors and plain containers, never code.
"""

from __future__ import annotations

import io
import logging
import time
from typing import Any

import torch
from torch import nn

from nf_dist.models.training import LoopControl, TrainProgress
from nf_dist.storage.uri import read_bytes, remove, write_bytes_atomic

logger = logging.getLogger(__name__)


class EpochCheckpoints:
    """The epoch checkpoints of one model's build.

    Args:
        uri: where the partial lives (``BenchStore.partial_uri``).
        identity: what the partial must have been written for (the catalog row's canonical text
            and the parent's sha256); anything else is stale.
        epochs: the recipe's epochs, for the progress line logged at every checkpoint.
    """

    def __init__(self, uri: str, identity: dict[str, Any], epochs: float | None = None) -> None:
        self.uri = uri
        self.identity = identity
        self.epochs = epochs
        self.earlier_seconds = 0.0  # training time spent before a resume
        self.resumed_epochs = 0  # epochs restored from the partial
        self._attached = False

    def attach(self, model: nn.Module) -> LoopControl:
        """The loop control for training ``model``: restores a matching partial into it (weights
        and torch's generator) and saves one at every epoch boundary. One training per build."""
        if self._attached:
            raise RuntimeError(f"{self.uri}: epoch checkpoints cover one training loop per model")
        self._attached = True
        saved = self._load()
        if saved is not None and not _fits(saved, model):
            logger.warning(
                "%s: does not fit the model being built (another nf-dist version?); "
                "training from the start",
                self.uri,
            )
            saved = None
        resume = None
        if saved is not None:
            model.load_state_dict(saved["model"])
            torch.set_rng_state(saved["torch_rng"])
            resume = TrainProgress(
                saved["step"],
                saved["rng_state"],
                saved["optimizer_state"],
                list(saved["losses"]),
                saved["perturb_rng_state"],
            )
            self.earlier_seconds = float(saved["seconds"])
            self.resumed_epochs = len(resume.losses)
            logger.info(
                "%s: resuming at step %d after %d epochs (%.0fs already spent)",
                self.uri,
                resume.step,
                len(resume.losses),
                self.earlier_seconds,
            )
        started = time.perf_counter()

        def save(progress: TrainProgress) -> None:
            self._save(model, progress, self.earlier_seconds + time.perf_counter() - started)

        return LoopControl(resume=resume, on_epoch_end=save)

    def peek(self) -> tuple[int, float] | None:
        """``(epochs done, seconds spent)`` of a matching partial, else None; changes nothing."""
        saved = self._load()
        return None if saved is None else (len(saved["losses"]), float(saved["seconds"]))

    def clear(self) -> None:
        """Delete the partial (the model is committed)."""
        remove(self.uri)

    def _save(self, model: nn.Module, progress: TrainProgress, seconds: float) -> None:
        buffer = io.BytesIO()
        torch.save(
            {
                "identity": self.identity,
                "model": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                "torch_rng": torch.get_rng_state(),
                "step": progress.step,
                "rng_state": progress.rng_state,
                "optimizer_state": progress.optimizer_state,
                "losses": progress.losses,
                "perturb_rng_state": progress.perturb_rng_state,
                "seconds": seconds,
            },
            buffer,
        )
        write_bytes_atomic(self.uri, buffer.getvalue())
        logger.info(
            "%s: epoch %d of %s checkpointed after %.0fs (loss %.3f)",
            self.uri,
            len(progress.losses),
            f"{self.epochs:g}" if self.epochs is not None else "?",
            seconds,
            progress.losses[-1],
        )

    def _load(self) -> dict[str, Any] | None:
        try:
            blob = read_bytes(self.uri)
        except FileNotFoundError:
            return None
        try:
            saved: dict[str, Any] = torch.load(io.BytesIO(blob), weights_only=True)
        except Exception as exc:  # noqa: BLE001 - an unreadable partial only costs its epochs
            logger.warning("%s: unreadable partial (%s); training from the start", self.uri, exc)
            return None
        if not isinstance(saved, dict) or saved.get("identity") != self.identity:
            logger.info("%s: written for another row or parent; training from the start", self.uri)
            return None
        return saved


_FIELDS = (
    "model",
    "torch_rng",
    "step",
    "rng_state",
    "optimizer_state",
    "losses",
    "perturb_rng_state",
    "seconds",
)


def _fits(saved: dict[str, Any], model: nn.Module) -> bool:
    """Whether a partial has every field and exactly the model's tensors (names and shapes),
    checked before anything is loaded: a failed ``load_state_dict`` can leave a model half
    overwritten."""
    if any(name not in saved for name in _FIELDS) or not isinstance(saved["model"], dict):
        return False
    wanted = model.state_dict()
    return set(saved["model"]) == set(wanted) and all(
        isinstance(tensor, torch.Tensor) and tensor.shape == wanted[name].shape
        for name, tensor in saved["model"].items()
    )
