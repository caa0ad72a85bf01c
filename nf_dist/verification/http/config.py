"""How to reach a deployed suspect: its URL and protocol, the image it expects, the client's
limits (deadline, answer size, redirects), politeness (concurrency, rate, retries) and budget.

Example (YAML, a Triton / KServe v2 model that wants normalised 224 x 224 NCHW tensors)::

    endpoint:
      url: http://suspect.internal:8080/v2/models/resnet/infer
      protocol: oip-v2
      image: {size: 224, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}
      token_env: SUSPECT_TOKEN
      budget: 2000
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields
from typing import Literal, get_args

from nf_dist.errors import ConfigError

logger = logging.getLogger(__name__)

ProtocolName = Literal["nfdist", "oip-v2", "kserve-v1", "raw-image"]
PROTOCOL_NAMES: tuple[str, ...] = get_args(ProtocolName)


@dataclass(frozen=True)
class ImageEncoding:
    """What a 32 x 32 fingerprint becomes on the wire, so that it reaches the suspect's model as
    the owner intended.

    Images are resized to ``size`` x ``size`` (bilinear, half-pixel centres: the resize
    :class:`~nf_dist.verification.oracles.Preprocessing` applies to model files). Image protocols
    (nfdist, kserve-v1, raw-image) send them as ``format`` files; tensor protocols (oip-v2) send
    ``datatype`` tensors in ``layout``: FP32 as ``(pixel / 255 - mean) / std``, UINT8 as the
    pixels themselves.

    Attributes:
        size: the side the API expects (32: sent as made).
        format: png (lossless) or jpeg (lossy: only where the API takes nothing else).
        jpeg_quality: 1-100, for jpeg.
        layout: NCHW or NHWC, for tensors.
        datatype: FP32 or UINT8, for tensors.
        mean, std: per-channel normalisation of FP32 tensors (on [0, 1] pixels).
    """

    size: int = 32
    format: Literal["png", "jpeg"] = "png"
    jpeg_quality: int = 95
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    datatype: Literal["FP32", "UINT8"] = "FP32"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        if not 8 <= self.size <= 1024:
            raise ConfigError(f"endpoint.image.size must be in [8, 1024] pixels, got {self.size}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError("endpoint.image.jpeg_quality must be in [1, 100]")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError("endpoint.image.mean and .std need 3 values each, std > 0")


#: Settings that only one protocol reads, and the default that means "not set".
_PROTOCOL_FIELDS: dict[str, tuple[str, ...]] = {
    "nfdist": ("images_field", "labels_field"),
    "kserve-v1": ("instance",),
    "oip-v2": ("input_name", "output_name", "answer"),
    "raw-image": ("body", "multipart_field"),
}


@dataclass(frozen=True)
class EndpointConfig:
    """A prediction API and how to talk to it.

    Attributes:
        url: the endpoint, e.g. ``http://127.0.0.1:8000/predict`` or, for oip-v2,
            ``http://host/v2/models/NAME/infer``.
        protocol: the API's shape (:mod:`nf_dist.verification.http.protocols`): ``nfdist``
            (``nf-dist serve``: base64 PNGs in a JSON field, labels in another), ``oip-v2``
            (KServe v2 / Triton / MLServer: tensors in, logits, probabilities, class indices or
            Triton classification strings out), ``kserve-v1`` (``instances`` of base64 images,
            ``predictions`` as labels, names or scores), ``raw-image`` (one image per request as
            bytes or a multipart form; ``{class: score}``, ``[{"label", "score"}]`` or a label).
        image: what each image becomes on the wire (:class:`ImageEncoding`).
        images_field, labels_field: nfdist's request and answer fields.
        instance: kserve-v1's instances: bare base64 strings (``string``), KServe's
            ``{"b64": ...}`` (``b64``) or TorchServe's ``{"data": ...}`` (``data``).
        input_name: oip-v2's input tensor name.
        output_name: oip-v2's output to read (None: the first).
        answer: what oip-v2's output holds: ``auto`` (told by its datatype and shape),
            ``scores`` (logits or probabilities, ``[N, classes]``), ``indices`` (``[N]``) or
            ``classification`` (Triton's extension, asked for and read as ``"score:index"``).
        body: raw-image's request: the image ``bytes`` or a ``multipart`` form.
        multipart_field: raw-image's form field holding the image.
        headers: extra request headers (not secrets: they are recorded as configured).
        token_env: an environment variable holding a bearer token (None: no token).
        class_names: when the API answers class names, the names in label order.
        num_classes: labels must lie in ``[0, num_classes)``.
        batch_size: images per request (raw-image sends one).
        concurrency: requests in flight at once.
        qps: most requests per second.
        timeout_s: the whole request's deadline (connect, headers and body together): an API
            that drips its answer is cut off there.
        max_answer_bytes: the most answer bytes read per request, counted after decompression.
        redirects: ``refuse`` (a redirect is an error) or ``same-host`` (307/308 to the same
            scheme, host and port are followed, at most 3).
        max_retries: retries of one request before giving up with an error.
        backoff_s, max_backoff_s: the first retry's delay and the cap (doubling, full jitter).
        budget: most images ever put on the wire for one suspect, across retries, cover
            traffic and resumed runs (the query log keeps the count).
        cover_ratio: clean images sent per fingerprint.
        seed: seeds the shuffling and the choice of cover images.
    """

    url: str = ""
    protocol: ProtocolName = "nfdist"
    image: ImageEncoding = field(default_factory=ImageEncoding)
    images_field: str = "images"
    labels_field: str = "labels"
    instance: Literal["string", "b64", "data"] = "string"
    input_name: str = "input"
    output_name: str | None = None
    answer: Literal["auto", "scores", "indices", "classification"] = "auto"
    body: Literal["bytes", "multipart"] = "bytes"
    multipart_field: str = "file"
    headers: dict[str, str] = field(default_factory=dict)
    token_env: str | None = None
    class_names: tuple[str, ...] = ()
    num_classes: int = 10
    batch_size: int = 16
    concurrency: int = 4
    qps: float = 20.0
    timeout_s: float = 10.0
    max_answer_bytes: int = 8 * 1024 * 1024
    redirects: Literal["refuse", "same-host"] = "refuse"
    max_retries: int = 5
    backoff_s: float = 0.2
    max_backoff_s: float = 10.0
    budget: int = 10_000
    cover_ratio: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"endpoint.url must be an http(s) URL, got {self.url!r}")
        positive = ("batch_size", "concurrency", "budget", "num_classes", "max_answer_bytes")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"endpoint.{name} must be at least 1, got {getattr(self, name)}")
        if not self.qps > 0 or not self.timeout_s > 0:
            raise ConfigError("endpoint.qps and endpoint.timeout_s must be positive")
        if self.max_retries < 0 or self.cover_ratio < 0:
            raise ConfigError("endpoint.max_retries and endpoint.cover_ratio must be >= 0")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ConfigError(
                f"endpoint.class_names lists {len(self.class_names)} names for "
                f"{self.num_classes} classes"
            )
        if "authorization" in {name.lower() for name in self.headers}:
            raise ConfigError(
                "endpoint.headers holds an Authorization header, which would be recorded; put "
                "the token in an environment variable and name it with endpoint.token_env"
            )
        self._warn_ignored()

    def _warn_ignored(self) -> None:
        """Warn about settings another protocol reads, set away from their defaults."""
        defaults = {f.name: f.default for f in fields(EndpointConfig)}
        for protocol, names in _PROTOCOL_FIELDS.items():
            if protocol == self.protocol:
                continue
            for name in names:
                if getattr(self, name) != defaults[name]:
                    logger.warning(
                        "endpoint.%s is read by the %s protocol only; ignored for %s",
                        name,
                        protocol,
                        self.protocol,
                    )
        tensor_only = ("layout", "datatype", "mean", "std")
        image_defaults = ImageEncoding()
        if self.protocol != "oip-v2":
            for name in tensor_only:
                if getattr(self.image, name) != getattr(image_defaults, name):
                    logger.warning(
                        "endpoint.image.%s applies to tensors (oip-v2) only; %s sends image files",
                        name,
                        self.protocol,
                    )
        elif self.image.format != image_defaults.format:
            logger.warning("endpoint.image.format is ignored: oip-v2 sends tensors")
        if self.image.format == "jpeg" and self.protocol != "oip-v2":
            logger.warning(
                "endpoint.image.format is jpeg: fingerprints reach the suspect altered by lossy "
                "compression, which lowers the matching rate of stolen and independent models "
                "alike; use png wherever the API takes it"
            )
