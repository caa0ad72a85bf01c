"""Save and load classifiers as safe checkpoints (safetensors + JSON sidecar)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from nf_dist.errors import CheckpointError
from nf_dist.models import Classifier, create_classifier, list_classifiers
from nf_dist.storage.checkpoints import load_checkpoint, save_checkpoint


def save_classifier(model: Classifier, uri: str, **meta: Any) -> str:
    """Write ``model`` with its architecture spec and ``meta`` (config, accuracy, ...)."""
    return save_checkpoint(
        uri, model.state_dict(), {"kind": "classifier", "model": model.spec(), **meta}
    )


#: Bounds on what a sidecar may claim: a wider model or more classes is refused before it is
#: built (a sidecar is as untrusted as the weights it describes).
MAX_WIDTH = 4.0
MAX_CLASSES = 1000
STEM_STRIDES = (1, 2)


@dataclass(frozen=True)
class ClassifierSpec:
    """What a classifier checkpoint's sidecar says it is, validated."""

    arch: str
    num_classes: int
    width: float
    stem_stride: int

    @classmethod
    def from_sidecar(cls, uri: str, meta: Any) -> ClassifierSpec:
        """The sidecar's ``model`` section, each field checked, or a CheckpointError naming it."""
        spec = meta.get("model") if isinstance(meta, dict) else None
        if not isinstance(meta, dict) or meta.get("kind") != "classifier":
            raise CheckpointError(f"{uri}: the sidecar must be a JSON object with kind: classifier")
        if not isinstance(spec, dict):
            raise CheckpointError(
                f"{uri}: the sidecar needs model: {{arch, num_classes, width, stem_stride}}"
            )
        arch = spec.get("arch")
        if not isinstance(arch, str) or arch not in list_classifiers():
            raise CheckpointError(
                f"{uri}: model.arch {arch!r} is not a known architecture ({list_classifiers()})"
            )
        num_classes = spec.get("num_classes", 10)
        if type(num_classes) is not int or not 2 <= num_classes <= MAX_CLASSES:
            raise CheckpointError(
                f"{uri}: model.num_classes must be an integer in [2, {MAX_CLASSES}], got "
                f"{num_classes!r}"
            )
        width = spec.get("width", 1.0)
        if (
            isinstance(width, bool)
            or not isinstance(width, (int, float))
            or not math.isfinite(width)
            or not 0 < width <= MAX_WIDTH
        ):
            raise CheckpointError(
                f"{uri}: model.width must be a number in (0, {MAX_WIDTH}], got {width!r}"
            )
        stride = spec.get("stem_stride", 1)
        if type(stride) is not int or stride not in STEM_STRIDES:
            raise CheckpointError(f"{uri}: model.stem_stride must be 1 or 2, got {stride!r}")
        return cls(arch, num_classes, float(width), stride)


def _check_shapes(uri: str, spec: ClassifierSpec, tensors: dict[str, torch.Tensor]) -> None:
    """The weights must be exactly the state dict the sidecar's architecture has: the same
    names and shapes (checked on the meta device, which allocates nothing)."""
    with torch.device("meta"):
        expected = create_classifier(
            spec.arch, spec.num_classes, spec.width, spec.stem_stride
        ).state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"{uri}: the weights do not belong to {spec.arch} (missing {missing[:3]}, "
            f"unexpected {extra[:3]}); the sidecar does not describe these weights"
        )
    for name, tensor in tensors.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise CheckpointError(
                f"{uri}: tensor {name!r} has shape {tuple(tensor.shape)} but {spec.arch} at "
                f"width {spec.width:g} needs {tuple(expected[name].shape)}; the sidecar's "
                "width or num_classes does not match the weights"
            )


def load_classifier(
    uri: str,
    device: str | torch.device = "cpu",
    *,
    unsafe_pickle: bool = False,
    expected_sha256: str | None = None,
) -> tuple[Classifier, dict[str, Any]]:
    """Rebuild a classifier from its sidecar and load its weights (eval mode).

    ``unsafe_pickle`` accepts this one file as a pickle the user trusts (see
    :mod:`nf_dist.storage.checkpoints`); ``expected_sha256`` is the weights' hash from a record
    other than the sidecar (a benchmark manifest).

    Raises:
        UnsafeCheckpointError: the file is pickle-based (and not allowed).
        CheckpointError: missing/corrupt files, or weights that do not fit the architecture.
    """
    tensors, meta = load_checkpoint(
        uri, unsafe_pickle=unsafe_pickle, expected_sha256=expected_sha256
    )
    spec = ClassifierSpec.from_sidecar(uri, meta)
    _check_shapes(uri, spec, tensors)  # before any memory is spent on the claimed architecture
    model = create_classifier(spec.arch, spec.num_classes, spec.width, spec.stem_stride)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{uri}: weights do not match architecture {spec}: {exc}") from exc
    for name, value in tensors.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"{uri}: tensor {name!r} holds NaN or inf values")
    return model.to(device).eval(), meta
