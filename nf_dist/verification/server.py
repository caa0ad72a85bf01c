"""A suspect served as a label-returning JSON API, for tests, demos and the benchmark.

``POST /predict`` takes ``{"images": [base64 PNG, ...]}`` and answers ``{"labels": [...]}`` (top-1
class indices, or class names when the server is given them); ``GET /health`` answers
``{"ok": true}``; ``GET /stats`` counts requests and images answered. With a token configured,
every request needs ``Authorization: Bearer <token>``.

Fault injection makes it behave like a busy, flaky service: a share of answers are 429 (with a
``Retry-After``) or 500, answers are delayed, and a share of bodies are malformed JSON. Faults
are drawn from a seeded generator, so a test run is repeatable.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import random
import threading
from dataclasses import dataclass, field

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from PIL import Image

from nf_dist.errors import ConfigError
from nf_dist.verification.oracles import LabelOracle


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


@dataclass
class Stats:
    """What the server did: requests received, images answered, faults injected."""

    requests: int = 0
    images_answered: int = 0
    faults: dict[str, int] = field(default_factory=lambda: {"429": 0, "500": 0, "malformed": 0})


def create_app(
    oracle: LabelOracle,
    *,
    faults: Faults = Faults(),
    token: str | None = None,
    class_names: tuple[str, ...] = (),
    max_batch: int = 1024,
) -> FastAPI:
    """The API around ``oracle`` (see the module docstring)."""
    app = FastAPI(title="nf-dist suspect", docs_url=None, redoc_url=None)
    stats = Stats()
    draw = random.Random(faults.seed)
    lock = threading.Lock()  # the model and the counters serve one request at a time

    def fault() -> str | None:
        with lock:
            roll = draw.random()
        for name, share in (("429", faults.rate_429), ("500", faults.rate_500)):
            if roll < share:
                return name
            roll -= share
        return "malformed" if roll < faults.malformed else None

    @app.get("/health")
    def health() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/stats")
    def get_stats() -> dict:
        return {
            "requests": stats.requests,
            "images_answered": stats.images_answered,
            "faults": dict(stats.faults),
        }

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        if token is not None and request.headers.get("authorization") != f"Bearer {token}":
            return JSONResponse({"error": "missing or wrong bearer token"}, status_code=401)
        with lock:
            stats.requests += 1
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
        try:
            body = await request.json()
            images = np.stack([_decode(item) for item in body["images"]])
        except (ValueError, KeyError, TypeError) as exc:
            return JSONResponse({"error": f"bad request: {exc}"}, status_code=400)
        if len(images) > max_batch:
            return JSONResponse({"error": f"at most {max_batch} images"}, status_code=413)
        with lock:
            labels = [int(v) for v in oracle(images)]
            stats.images_answered += len(labels)
        answer = [class_names[v] for v in labels] if class_names else labels
        return JSONResponse({"labels": answer})

    return app


def _decode(item: str) -> np.ndarray:
    try:
        image = Image.open(io.BytesIO(base64.b64decode(item, validate=True))).convert("RGB")
    except (binascii.Error, OSError) as exc:
        raise ValueError(f"an image is not base64 PNG ({exc})") from exc
    return np.asarray(image)
