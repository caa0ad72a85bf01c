"""Suspects shipped as files, opened as label-only oracles without running untrusted code.

Formats (``SuspectFile.format``, or guessed from the file name):

- ``checkpoint``: nf-dist's own safetensors + JSON sidecar (checked field by field and against
  the weights' shapes before a model is built);
- ``onnx``: any ONNX classifier, run by onnxruntime (operators only, no Python);
- ``torchscript``: a ``torch.jit`` archive (its own graph, not pickled Python classes);
- ``timm:<name>`` / ``torchvision:<name>``: a published architecture by name, built fresh with
  ``num_classes`` outputs, its weights from a safetensors file (strictly matched);
- pickles only as nf-dist checkpoints the user names with ``--unsafe-allow-pickle``.

Foreign formats take a :class:`~nf_dist.verification.oracles.Preprocessing` (input size,
mean/std) when they were trained on other inputs than nf-dist's [0, 1] 32x32 images.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes

from nf_dist.errors import CheckpointError, ConfigError
from nf_dist.models.checkpoint import load_classifier
from nf_dist.storage.checkpoints import WEIGHTS_SUFFIX, checkpoint_stem
from nf_dist.storage.uri import exists, is_remote, read_bytes
from nf_dist.verification.oracles import LabelOracle, Preprocessing, model_oracle, module_oracle

FORMATS = ("checkpoint", "onnx", "torchscript")


@dataclass(frozen=True)
class SuspectFile:
    """A suspect model file and how to read it.

    Attributes:
        uri: the file (a checkpoint stem or its ``.safetensors``, ``.onnx``, ``.pt``/``.ts``
            TorchScript archive, or safetensors weights for an architecture by name).
        format: ``checkpoint``, ``onnx``, ``torchscript``, ``timm:<name>``,
            ``torchvision:<name>``; empty: guessed from the file name.
        num_classes: outputs of an architecture by name (and the class count other formats
            must answer within).
        preprocessing: input size and normalisation for foreign formats.
        unsafe_pickle: this checkpoint may be a pickle the user trusts.
    """

    uri: str
    format: str = ""
    num_classes: int = 10
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    unsafe_pickle: bool = False

    def kind(self) -> str:
        """The format, explicit or guessed from the file name."""
        if self.format:
            return self.format
        suffix = Path(self.uri).suffix
        return {".onnx": "onnx", ".ts": "torchscript", ".torchscript": "torchscript"}.get(
            suffix, "checkpoint"
        )


@dataclass(frozen=True)
class OpenedSuspect:
    """An oracle, the identity the evidence records (the file's sha256) and its class count."""

    oracle: LabelOracle
    identity: str
    num_classes: int


def file_sha256(uri: str) -> str:
    """The sha256 of a suspect file (of its weights, for a checkpoint's stem or sidecar).

    A stem may hold dots (``models/prune_0.6``), so it is told by the file's absence, not by
    the look of a suffix.
    """
    stem = checkpoint_stem(uri)
    path = stem + WEIGHTS_SUFFIX if stem != uri or not exists(uri) else uri
    return hashlib.sha256(read_bytes(path)).hexdigest()


def open_suspect(suspect: SuspectFile) -> OpenedSuspect:
    """Open a suspect file as a label-only oracle.

    Raises:
        ConfigError: an unknown format or architecture name.
        CheckpointError: a file that is not what its format says, or whose outputs or input
            shape do not fit.
    """
    kind = suspect.kind()
    identity = f"sha256:{file_sha256(suspect.uri)}"
    if kind == "checkpoint":
        model, _ = load_classifier(suspect.uri, unsafe_pickle=suspect.unsafe_pickle)
        return OpenedSuspect(model_oracle(model), identity, model.num_classes)
    if kind == "onnx":
        return OpenedSuspect(_onnx_oracle(suspect), identity, suspect.num_classes)
    if kind == "torchscript":
        try:
            module = torch.jit.load(suspect.uri, map_location="cpu")
        except RuntimeError as exc:
            raise CheckpointError(f"{suspect.uri} is not a TorchScript archive ({exc})") from exc
        return OpenedSuspect(
            module_oracle(module, suspect.preprocessing), identity, suspect.num_classes
        )
    if kind.startswith(("timm:", "torchvision:")):
        module = _named_architecture(kind, suspect.num_classes)
        _load_strict(module, suspect.uri)
        return OpenedSuspect(
            module_oracle(module, suspect.preprocessing), identity, suspect.num_classes
        )
    raise ConfigError(
        f"unknown suspect format {kind!r}; use one of {', '.join(FORMATS)}, timm:<name> or "
        "torchvision:<name>"
    )


def _named_architecture(kind: str, num_classes: int) -> torch.nn.Module:
    library, _, name = kind.partition(":")
    try:
        if library == "timm":
            import timm  # only when asked for: its import is slow

            return timm.create_model(name, pretrained=False, num_classes=num_classes)
        import torchvision

        return torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ConfigError(f"{kind}: not an architecture {library} knows ({exc})") from exc


def _load_strict(module: torch.nn.Module, uri: str) -> None:
    """Weights from a safetensors file, every name and shape exactly the module's."""
    try:
        tensors = load_safetensors_bytes(read_bytes(uri))
    except (SafetensorError, ValueError) as exc:
        raise CheckpointError(f"{uri} is not a safetensors file ({exc})") from exc
    expected = module.state_dict()
    if set(tensors) != set(expected) or any(
        tuple(tensors[k].shape) != tuple(v.shape) for k, v in expected.items()
    ):
        raise CheckpointError(
            f"{uri}: the weights' names or shapes are not those of the named architecture; "
            "check --arch and --num-classes"
        )
    module.load_state_dict(tensors, strict=True)


def _onnx_oracle(suspect: SuspectFile) -> LabelOracle:
    import onnxruntime  # only for ONNX suspects: its import is slow

    # A local file is opened by path, so weights stored beside it (external data) load too.
    source = suspect.uri if not is_remote(suspect.uri) else read_bytes(suspect.uri)
    try:
        session = onnxruntime.InferenceSession(source, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
        raise CheckpointError(f"{suspect.uri} is not a loadable ONNX model ({exc})") from exc
    (model_input,) = session.get_inputs()
    size = suspect.preprocessing.size
    shape = model_input.shape
    if len(shape) != 4 or any(
        isinstance(d, int) and d != want for d, want in zip(shape[1:], (3, size, size))
    ):
        raise CheckpointError(
            f"{suspect.uri} takes input {shape}, not (N, 3, {size}, {size}); declare the "
            "suspect's preprocessing.size (and mean/std) to match it"
        )

    # A model exported with a fixed batch size is fed that many images at a time.
    batch = shape[0] if isinstance(shape[0], int) else 256

    def answer(images: np.ndarray) -> np.ndarray:
        labels = []
        for start in range(0, len(images), batch):
            chunk = images[start : start + batch]
            count = len(chunk)
            if isinstance(shape[0], int) and count < batch:  # pad a fixed-size batch
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - count, axis=0)])
            inputs = suspect.preprocessing(chunk).numpy()
            (logits,) = session.run(None, {model_input.name: inputs})
            logits = logits[:count]
            if logits.ndim != 2 or logits.shape[1] != suspect.num_classes:
                raise CheckpointError(
                    f"{suspect.uri} answers {logits.shape}, not (N, {suspect.num_classes}) "
                    "logits; set the suspect's num_classes"
                )
            labels.append(np.asarray(logits).argmax(1))
        return np.concatenate(labels) if labels else np.zeros(0, np.int64)

    return answer
