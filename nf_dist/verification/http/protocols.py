"""The inference APIs a suspect may sit behind, one class each (``PROTOCOLS``).

Each turns a batch of fingerprints into one request body and reads one label per image from the
answer. ``nfdist`` is ``nf-dist serve``'s own; the rest are the standard serving protocols:

- ``oip-v2``: the Open Inference Protocol (KServe v2, Triton, MLServer):
  ``POST /v2/models/NAME/infer`` with ``{"inputs": [{"name", "shape", "datatype", "data"}]}``;
  the answer's ``outputs[k]`` holds logits or probabilities ``[N, classes]``, class indices
  ``[N]``, or, with Triton's classification extension, ``"score:index[:label]"`` strings.
- ``kserve-v1``: KServe's V1 protocol, also TorchServe's KServe wrapper:
  ``{"instances": [...]}`` in, ``{"predictions": [...]}`` out.
- ``raw-image``: one image per request as the body (or a multipart form), as TorchServe's
  ``/predictions/NAME`` and Hugging Face-style image classification take it.
"""

from __future__ import annotations

import base64
import json
import math
import uuid
from typing import Any, ClassVar

import numpy as np

from nf_dist.registry import Registry
from nf_dist.verification.http.config import EndpointConfig
from nf_dist.verification.http.images import image_content_type, image_files, image_tensor
from nf_dist.verification.http.labels import LabelReader, short
from nf_dist.verification.http.problems import EndpointError, RetryableError

PROTOCOLS: Registry[type[Protocol]] = Registry("protocol")


class Protocol:
    """One API shape. ``encode`` makes a request body, ``decode`` reads its answer.

    Shape: ``encode`` takes uint8 images ``(N, 32, 32, 3)``; ``decode`` returns ``N`` labels in
    ``[0, num_classes)`` or raises :class:`RetryableError` / :class:`EndpointError`.
    """

    #: Images per request when the protocol fixes it (raw-image: 1); None: ``batch_size``.
    images_per_request: ClassVar[int | None] = None

    def __init__(self, config: EndpointConfig) -> None:
        self.config = config
        self.reader = LabelReader(config.url, config.num_classes, config.class_names)

    def encode(self, images: np.ndarray) -> tuple[bytes, str]:
        """``(body, content type)`` asking for the labels of ``images``."""
        raise NotImplementedError

    def decode(self, body: bytes, count: int) -> list[int]:
        """The ``count`` labels in an answer body."""
        raise NotImplementedError

    def _json(self, body: bytes) -> Any:
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RetryableError(f"answered a body that is not JSON ({exc})") from exc

    def _labels(self, values: Any, count: int, where: str) -> list[int]:
        if not isinstance(values, list):
            raise RetryableError(f"answered {where} as {short(values)}, not a list")
        if len(values) != count:
            raise RetryableError(f"answered {len(values)} labels in {where} for {count} images")
        return [self.reader.top1(value) for value in values]


def _field(answer: Any, name: str) -> Any:
    if not isinstance(answer, dict) or name not in answer:
        raise RetryableError(f"answered without a {name!r} field")
    return answer[name]


@PROTOCOLS.register("nfdist")
class NfDist(Protocol):
    """``{images_field: [base64 PNG, ...]}`` -> ``{labels_field: [label, ...]}``."""

    def encode(self, images: np.ndarray) -> tuple[bytes, str]:
        files = image_files(images, self.config.image)
        payload = {self.config.images_field: [base64.b64encode(f).decode() for f in files]}
        return json.dumps(payload).encode(), "application/json"

    def decode(self, body: bytes, count: int) -> list[int]:
        answer = self._json(body)
        return self._labels(_field(answer, self.config.labels_field), count, "labels")


@PROTOCOLS.register("kserve-v1")
class KServeV1(Protocol):
    """``{"instances": [b64 | {"b64": b64} | {"data": b64}]}`` -> ``{"predictions": [...]}``,
    each prediction a label, a name or scores."""

    def encode(self, images: np.ndarray) -> tuple[bytes, str]:
        encoded = [base64.b64encode(f).decode() for f in image_files(images, self.config.image)]
        wrap = self.config.instance
        instances = encoded if wrap == "string" else [{wrap: item} for item in encoded]
        return json.dumps({"instances": instances}).encode(), "application/json"

    def decode(self, body: bytes, count: int) -> list[int]:
        answer = self._json(body)
        return self._labels(_field(answer, "predictions"), count, "predictions")


@PROTOCOLS.register("oip-v2")
class OpenInferenceV2(Protocol):
    """Tensors in (``endpoint.image``: size, layout, datatype, normalisation), one output read
    as ``endpoint.answer`` says."""

    def encode(self, images: np.ndarray) -> tuple[bytes, str]:
        tensor = image_tensor(images, self.config.image)
        request: dict[str, Any] = {
            "inputs": [
                {
                    "name": self.config.input_name,
                    "shape": list(tensor.shape),
                    "datatype": self.config.image.datatype,
                    "data": tensor.reshape(-1).tolist(),
                }
            ]
        }
        if self.config.answer == "classification":
            # Triton's classification extension: the top-1 class as "score:index[:label]".
            name = self.config.output_name or "output"
            request["outputs"] = [{"name": name, "parameters": {"classification": 1}}]
        return json.dumps(request).encode(), "application/json"

    def decode(self, body: bytes, count: int) -> list[int]:
        output = self._output(self._json(body))
        shape, datatype, data = output.get("shape"), output.get("datatype"), output.get("data")
        if not isinstance(shape, list) or not all(isinstance(s, int) for s in shape):
            raise RetryableError(f"answered an output without an integer shape: {short(shape)}")
        if not shape or shape[0] != count:
            raise RetryableError(f"answered an output of shape {shape} for {count} images")
        flat = _flatten(data)
        if len(flat) != math.prod(shape):
            raise RetryableError(f"answered {len(flat)} values for an output of shape {shape}")
        width = len(flat) // count  # values per image
        rows = [flat[i * width : (i + 1) * width] for i in range(count)]
        kind: str = self.config.answer
        if kind == "auto":
            kind = _kind(str(datatype), shape, self.config.num_classes)
        if kind == "classification":
            return [self._classification(row[0]) for row in rows]
        if kind == "indices":
            if len(rows[0]) != 1:
                raise EndpointError(
                    f"{self.config.url} answered {len(rows[0])} values per image where one "
                    "class index belongs; set endpoint.answer: scores"
                )
            return [self.reader.top1(_integral(row[0])) for row in rows]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat):
            raise RetryableError("answered scores that are not numbers")
        return [self.reader.scores([float(v) for v in row]) for row in rows]

    def _output(self, answer: Any) -> dict[str, Any]:
        outputs = _field(answer, "outputs")
        if not isinstance(outputs, list) or not outputs:
            raise RetryableError("answered no outputs")
        if self.config.output_name is None:
            chosen = outputs[0]
        else:
            named = [
                o
                for o in outputs
                if isinstance(o, dict) and o.get("name") == self.config.output_name
            ]
            if not named:
                names = [o.get("name") for o in outputs if isinstance(o, dict)]
                raise EndpointError(
                    f"{self.config.url} answered outputs {names}, not "
                    f"{self.config.output_name!r}; set endpoint.output_name to one of them"
                )
            chosen = named[0]
        if not isinstance(chosen, dict):
            raise RetryableError(f"answered an output that is not an object: {short(chosen)}")
        return chosen

    def _classification(self, value: Any) -> int:
        """Triton's ``"score:index"`` or ``"score:index:label"``."""
        parts = str(value).split(":")
        if len(parts) < 2 or not parts[1].strip().lstrip("-").isdigit():
            raise RetryableError(f"answered {short(value)}, not a 'score:index' class")
        return self.reader.index(int(parts[1]))


def _kind(datatype: str, shape: list[int], num_classes: int) -> str:
    """What an output holds, told by its datatype and shape."""
    if datatype == "BYTES":
        return "classification"
    per_image = math.prod(shape[1:]) if len(shape) > 1 else 1
    if datatype.startswith(("INT", "UINT")) and per_image == 1:
        return "indices"
    if per_image == num_classes:
        return "scores"
    raise RetryableError(
        f"answered a {datatype} output of shape {shape}: neither one class index nor "
        f"{num_classes} scores per image (set endpoint.answer and endpoint.output_name)"
    )


def _flatten(data: Any) -> list[Any]:
    """Row-major values of a (possibly nested) list."""
    if not isinstance(data, list):
        raise RetryableError(f"answered output data {short(data)}, not a list")
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            flat.append(value)
        else:
            stack.pop()
    return flat


def _integral(value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise RetryableError(f"answered {short(value)} where a class index belongs")


@PROTOCOLS.register("raw-image")
class RawImage(Protocol):
    """One image per request: the file as the body, or a multipart form
    (``endpoint.multipart_field``); the answer is one label in any form
    :class:`~nf_dist.verification.http.labels.LabelReader` takes, or a plain-text name."""

    images_per_request = 1

    def encode(self, images: np.ndarray) -> tuple[bytes, str]:
        assert len(images) == 1, "raw-image sends one image per request"
        (file,) = image_files(images, self.config.image)
        content_type = image_content_type(self.config.image)
        if self.config.body == "bytes":
            return file, content_type
        boundary = uuid.uuid4().hex
        extension = "png" if self.config.image.format == "png" else "jpg"
        head = (
            f"--{boundary}\r\nContent-Disposition: form-data; "
            f'name="{self.config.multipart_field}"; filename="image.{extension}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        )
        body = head.encode() + file + f"\r\n--{boundary}--\r\n".encode()
        return body, f"multipart/form-data; boundary={boundary}"

    def decode(self, body: bytes, count: int) -> list[int]:
        assert count == 1
        try:
            answer = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            text = body.decode("utf-8", "replace").strip()
            if not text or len(text) > 200:
                raise RetryableError(f"answered {short(text)}, neither JSON nor a label") from None
            answer = text
        if isinstance(answer, list) and len(answer) == 1 and self.config.num_classes > 1:
            answer = answer[0]  # a batch of one: [label] or [[{"label", "score"}, ...]]
        return [self.reader.top1(answer)]
