"""Save and load classifiers as safe checkpoints (safetensors + JSON sidecar)."""

from __future__ import annotations

from typing import Any

import torch

from nf_dist.errors import CheckpointError
from nf_dist.models import Classifier, create_classifier
from nf_dist.storage.checkpoints import load_checkpoint, save_checkpoint


def save_classifier(model: Classifier, uri: str, **meta: Any) -> str:
    """Write ``model`` with its architecture spec and ``meta`` (config, accuracy, ...)."""
    return save_checkpoint(
        uri, model.state_dict(), {"kind": "classifier", "model": model.spec(), **meta}
    )


def load_classifier(
    uri: str, device: str | torch.device = "cpu", *, unsafe_pickle: bool = False
) -> tuple[Classifier, dict[str, Any]]:
    """Rebuild a classifier from its sidecar and load its weights (eval mode).

    ``unsafe_pickle`` accepts this one file as a pickle the user trusts (see
    :mod:`nf_dist.storage.checkpoints`).

    Raises:
        UnsafeCheckpointError: the file is pickle-based (and not allowed).
        CheckpointError: missing/corrupt files, or weights that do not fit the architecture.
    """
    tensors, meta = load_checkpoint(uri, unsafe_pickle=unsafe_pickle)
    spec = meta.get("model")
    if meta.get("kind") != "classifier" or not isinstance(spec, dict) or "arch" not in spec:
        raise CheckpointError(
            f"{uri}: sidecar does not describe a classifier (needs kind: classifier and "
            "model: {arch, num_classes, width, stem_stride})"
        )
    model = create_classifier(
        spec["arch"],
        num_classes=int(spec.get("num_classes", 10)),
        width=float(spec.get("width", 1.0)),
        stem_stride=int(spec.get("stem_stride", 1)),
    )
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{uri}: weights do not match architecture {spec}: {exc}") from exc
    for name, value in tensors.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"{uri}: tensor {name!r} holds NaN or inf values")
    return model.to(device).eval(), meta
