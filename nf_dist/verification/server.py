"""A suspect served as a label-returning JSON API, for tests, demos and the benchmark.

``POST /predict`` takes ``{"images": [base64 PNG, ...]}`` and answers ``{"labels": [...]}`` (top-1
class indices, or class names when the server is given them); ``GET /health`` answers
``{"ok": true}``, always and at once; ``GET /stats`` counts requests, images received and
answered, refusals and faults. With a token configured, ``/predict`` and ``/stats`` need
``Authorization: Bearer <token>`` (the scheme in any case, RFC 9110).

It refuses before it works, cheapest check first (:class:`Limits`): the declared and the read
body size, the number of images (before any is decoded), each image's PNG header (format, side,
pixels: a 79 KB PNG can declare 9000 x 9000 pixels), and only then decodes. Decoding and inference
run off the event loop, one batch at a time, behind a bounded queue: a request that finds it full
is answered 429 with ``Retry-After``.

Fault injection makes it behave like a busy, flaky service: a share of answers are 429 (with a
``Retry-After``) or 500, answers are delayed, and a share of bodies are malformed JSON. Faults
are drawn from a seeded generator, so a test run is repeatable.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import io
import json
import random
import struct
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from PIL import Image

from nf_dist.errors import ConfigError
from nf_dist.verification.http.images import resized_pixels
from nf_dist.verification.oracles import LabelOracle

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: The side of the images a label oracle takes (LabelOracle's contract).
ORACLE_SIZE = 32


@dataclass(frozen=True)
class Faults:
    """Injected faults: shares of requests answered 429 or 500 or with a malformed body, and a
    delay before every answer."""

    rate_429: float = 0.0
    rate_500: float = 0.0
    malformed: float = 0.0
    delay_s: float = 0.0
    retry_after_s: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("rate_429", "rate_500", "malformed"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"faults.{name} must be in [0, 1]")
        if self.rate_429 + self.rate_500 + self.malformed > 1:
            raise ConfigError("faults: the shares of 429, 500 and malformed answers exceed 1")
        if self.delay_s < 0 or self.retry_after_s < 0:
            raise ConfigError("faults.delay_s and faults.retry_after_s must be >= 0")


@dataclass(frozen=True)
class Limits:
    """What the server accepts before it spends work on a request.

    Attributes:
        max_body_bytes: the largest request body (413 past it, read or declared).
        body_timeout_s: the longest a client may take to send its body (408 past it).
        max_batch: the most images in one request (413, counted before decoding).
        image_size: the side every image must have (the model's input; other sizes are
            resized to it after the check).
        max_pixels: the most pixels an image may declare (a guard when image_size is large).
        max_queue: requests waiting for or in inference; one more is answered 429.
        retry_after_s: the Retry-After of a full queue's 429.
    """

    max_body_bytes: int = 16 * 1024 * 1024
    body_timeout_s: float = 30.0
    max_batch: int = 1024
    image_size: int = 32
    max_pixels: int = 1024 * 1024
    max_queue: int = 8
    retry_after_s: float = 1.0

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_batch", "max_pixels", "max_queue"):
            if getattr(self, name) < 1:
                raise ConfigError(f"limits.{name} must be at least 1")
        if not 8 <= self.image_size <= 1024 or self.image_size**2 > self.max_pixels:
            raise ConfigError(
                "limits.image_size must be in [8, 1024] pixels and its square within "
                "limits.max_pixels"
            )
        if self.body_timeout_s <= 0 or self.retry_after_s < 0:
            raise ConfigError("limits.body_timeout_s must be positive, retry_after_s >= 0")


@dataclass
class Stats:
    """What the server did: requests received, images received (counted before anything is
    decoded) and answered, requests refused (by status) and faults injected."""

    requests: int = 0
    images_received: int = 0
    images_answered: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=lambda: {"429": 0, "500": 0, "malformed": 0})


class _Refusal(Exception):  # noqa: N818 - an answer, not a failure of the server
    """A request answered with an error status before (or instead of) inference."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def create_app(
    oracle: LabelOracle,
    *,
    faults: Faults = Faults(),
    token: str | None = None,
    class_names: tuple[str, ...] = (),
    limits: Limits = Limits(),
) -> FastAPI:
    """The API around ``oracle`` (see the module docstring)."""
    stats = Stats()
    draw = random.Random(faults.seed)
    lock = threading.Lock()  # the counters and the fault draws
    # One batch in inference at a time, off the event loop; `pending` bounds the queue.
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nf-dist-serve")
    pending = 0

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        worker.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="nf-dist suspect", docs_url=None, redoc_url=None, lifespan=lifespan)

    def count(key: str) -> None:
        with lock:
            stats.refused[key] = stats.refused.get(key, 0) + 1

    def authorised(request: Request) -> bool:
        if token is None:
            return True
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credentials.strip().encode(), token.encode()
        )

    def fault() -> str | None:
        with lock:
            roll = draw.random()
        for name, share in (("429", faults.rate_429), ("500", faults.rate_500)):
            if roll < share:
                return name
            roll -= share
        return "malformed" if roll < faults.malformed else None

    def infer(items: list[str]) -> list[int]:
        """Check, decode and label a batch (in the worker thread)."""
        images = np.stack([_decode(item, i, limits) for i, item in enumerate(items)])
        # The oracle takes 32 x 32: the bilinear resize clients use (half-pixel centres, no
        # antialiasing), so an upsampling by an odd factor (224 = 7 x 32) comes back pixel for
        # pixel.
        images = resized_pixels(images, ORACLE_SIZE)
        labels = [int(v) for v in oracle(images)]
        with lock:
            stats.images_answered += len(labels)
        return labels

    @app.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/stats")
    async def get_stats(request: Request) -> Response:
        if not authorised(request):
            return _unauthorised()
        with lock:
            return JSONResponse(
                {
                    "requests": stats.requests,
                    "images_received": stats.images_received,
                    "images_answered": stats.images_answered,
                    "refused": dict(stats.refused),
                    "faults": dict(stats.faults),
                }
            )

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        nonlocal pending
        if not authorised(request):
            count("401")
            return _unauthorised()
        with lock:
            stats.requests += 1
        try:
            items = await _items(request, limits)
            with lock:
                stats.images_received += len(items)
            if pending >= limits.max_queue:
                raise _Refusal(
                    429,
                    f"busy: {pending} requests queued; retry later",
                    {"Retry-After": f"{limits.retry_after_s:g}"},
                )
            if faults.delay_s:
                await asyncio.sleep(faults.delay_s)
            injected = fault()
            if injected is not None:
                with lock:
                    stats.faults[injected] += 1
                if injected == "429":
                    headers = {"Retry-After": f"{faults.retry_after_s:g}"}
                    return JSONResponse({"error": "slow down"}, status_code=429, headers=headers)
                if injected == "500":
                    return JSONResponse({"error": "internal error"}, status_code=500)
                return Response('{"labels": [', media_type="application/json")
            pending += 1
            try:
                labels = await asyncio.get_running_loop().run_in_executor(worker, infer, items)
            finally:
                pending -= 1
        except _Refusal as refusal:
            count(str(refusal.status))
            return JSONResponse(
                {"error": refusal.message}, status_code=refusal.status, headers=refusal.headers
            )
        answer = [class_names[v] for v in labels] if class_names else labels
        return JSONResponse({"labels": answer})

    return app


def _unauthorised() -> Response:
    return JSONResponse(
        {"error": "missing or wrong bearer token"},
        status_code=401,
        headers={"WWW-Authenticate": "Bearer"},
    )


async def _items(request: Request, limits: Limits) -> list[str]:
    """The request's base64 images, the body's size and the count checked, none decoded."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise _Refusal(413, f"the body is larger than {limits.max_body_bytes} bytes")
    try:
        body = await asyncio.wait_for(_read(request, limits.max_body_bytes), limits.body_timeout_s)
    except asyncio.TimeoutError:
        raise _Refusal(408, f"the body took longer than {limits.body_timeout_s:g} s") from None
    try:
        items = json.loads(body)["images"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise _Refusal(400, f'expected {{"images": [base64 PNG, ...]}} ({exc})') from None
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise _Refusal(400, '"images" must be a list of base64 strings')
    if not items:
        raise _Refusal(400, '"images" is empty')
    if len(items) > limits.max_batch:
        raise _Refusal(413, f"{len(items)} images; at most {limits.max_batch} per request")
    return items


async def _read(request: Request, cap: int) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > cap:
            raise _Refusal(413, f"the body is larger than {cap} bytes")
    return bytes(body)


def png_size(data: bytes) -> tuple[int, int]:
    """A PNG's ``(width, height)`` from its header, without decoding it.

    Raises:
        ValueError: not a PNG.
    """
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _decode(item: str, index: int, limits: Limits) -> np.ndarray:
    """One base64 PNG as ``(image_size, image_size, 3)`` uint8, refused unless its header
    declares an acceptable image."""
    try:
        data = base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _Refusal(400, f"image {index} is not base64 ({exc})") from None
    try:
        width, height = png_size(data)
    except ValueError:
        kind = _sniff(data)
        raise _Refusal(415, f"image {index} is {kind}, not PNG; send lossless PNG") from None
    if width * height > limits.max_pixels:
        raise _Refusal(413, f"image {index} declares {width} x {height} pixels")
    if (width, height) != (limits.image_size, limits.image_size):
        raise _Refusal(
            422,
            f"image {index} is {width} x {height}; this model takes "
            f"{limits.image_size} x {limits.image_size}",
        )
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as opened:
            image = opened.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise _Refusal(400, f"image {index} is not a readable PNG ({exc})") from None
    if image.size != (limits.image_size, limits.image_size):
        raise _Refusal(400, f"image {index} decodes to {image.size}, not what its header says")
    return np.asarray(image)


def _sniff(data: bytes) -> str:
    signatures: dict[bytes, str] = {b"\xff\xd8\xff": "JPEG", b"GIF8": "GIF", b"BM": "BMP"}
    signatures[b"RIFF"] = "RIFF (WebP?)"
    for signature, name in signatures.items():
        if data.startswith(signature):
            return name
    return "not an image format it knows"
