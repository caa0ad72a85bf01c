"""A deployed suspect as a label-only oracle: a JSON prediction API over HTTP.

Request: ``POST url`` with ``{images_field: [base64 PNG, ...]}``; answer: ``{labels_field:
[label, ...]}`` with integer labels, or class names mapped through ``class_names``. Extra headers
come from the config; a bearer token only from the environment variable ``token_env`` (it is
never written to a log, a record or an error message).

The client is polite and robust: at most ``concurrency`` requests in flight and ``qps`` per
second, timeouts, retries with exponential backoff and full jitter on 429, 5xx, malformed answers
and connection errors (a ``Retry-After`` header is honoured), and a hard ``budget`` of images
sent. Every answered image is appended to a query log (JSON lines, keyed by the image's sha256)
as soon as its batch returns, so a crash or Ctrl-C loses nothing and a re-run re-sends nothing
already answered. Fingerprints go out shuffled among clean cover images (``cover_ratio`` per
fingerprint), so a batch of fingerprints is not visible as such; only fingerprint answers are
returned.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from nf_dist.errors import ConfigError, NfDistError

logger = logging.getLogger(__name__)
RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class EndpointConfig:
    """A prediction API and how to talk to it (see the module docstring).

    Attributes:
        url: the endpoint, e.g. ``http://127.0.0.1:8000/predict``.
        images_field, labels_field: the request's and the answer's JSON fields.
        headers: extra request headers (not secrets: they are recorded as configured).
        token_env: an environment variable holding a bearer token (None: no token).
        class_names: when the API answers class names, the names in label order.
        num_classes: labels must lie in ``[0, num_classes)``.
        batch_size: images per request.
        concurrency: requests in flight at once.
        qps: most requests per second.
        timeout_s: per-request timeout.
        max_retries: retries of one request before giving up with an error.
        backoff_s, max_backoff_s: the first retry's delay and the cap (doubling, full jitter).
        budget: most images ever sent to the API for one suspect (cover traffic included).
        cover_ratio: clean images sent per fingerprint.
        seed: seeds the shuffling and the choice of cover images.
    """

    url: str = ""
    images_field: str = "images"
    labels_field: str = "labels"
    headers: dict[str, str] = field(default_factory=dict)
    token_env: str | None = None
    class_names: tuple[str, ...] = ()
    num_classes: int = 10
    batch_size: int = 16
    concurrency: int = 4
    qps: float = 20.0
    timeout_s: float = 10.0
    max_retries: int = 5
    backoff_s: float = 0.2
    max_backoff_s: float = 10.0
    budget: int = 10_000
    cover_ratio: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"endpoint.url must be an http(s) URL, got {self.url!r}")
        positive = ("batch_size", "concurrency", "budget", "num_classes")
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


def image_key(image: np.ndarray) -> str:
    """The sha256 of an image's PNG bytes: its identity in the query log."""
    return hashlib.sha256(png_bytes(image)).hexdigest()


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


class QueryLog:
    """Answered images, appended as JSON lines (``key``, ``label``, ``time``, ``cover``)."""

    def __init__(self, path: str | None) -> None:
        self.path = Path(path) if path else None
        self.answers: dict[str, int] = {}
        self.records: list[dict] = []
        self._lock = threading.Lock()
        if self.path is not None and self.path.exists():
            for number, line in enumerate(self.path.read_text().splitlines(), start=1):
                try:
                    record = json.loads(line)
                    self.answers[str(record["key"])] = int(record["label"])
                    self.records.append(record)
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    logger.warning("%s:%d is not a log record; ignoring it", self.path, number)

    def add(self, keys: list[str], labels: list[int], cover: list[bool]) -> None:
        """Record one answered batch (appended and flushed before anything else is sent)."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        new: list[dict] = [
            {"key": k, "label": int(v), "time": stamp, "cover": c}
            for k, v, c in zip(keys, labels, cover)
        ]
        with self._lock:
            self.answers.update(zip(keys, map(int, labels)))
            self.records.extend(new)
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a") as sink:
                    sink.write("".join(json.dumps(r) + "\n" for r in new))
                    sink.flush()
                    os.fsync(sink.fileno())

    def sha256(self) -> str | None:
        """The log file's hash (what the evidence records), None without a file."""
        if self.path is None or not self.path.exists():
            return None
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


class _RateLimit:
    """At most ``qps`` request starts per second, shared by the client's threads."""

    def __init__(self, qps: float) -> None:
        self.interval, self.next, self.lock = 1.0 / qps, time.monotonic(), threading.Lock()

    def wait(self) -> None:
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next)
            self.next = start + self.interval
        time.sleep(max(0.0, start - now))


class HttpOracle:
    """Label-only queries to an endpoint (see the module docstring); call it with images."""

    def __init__(
        self, config: EndpointConfig, cover: np.ndarray, log_path: str | None = None
    ) -> None:
        self.config = config
        self.cover_pool = cover
        self.log = QueryLog(log_path)
        self.sent = 0  # images sent by this client (a retried batch counts once)
        self.requests = 0
        # Fingerprints and covers sent so far: each look's cover count is the running total's
        # rounding, so a run sends round(fingerprints * cover_ratio) covers however it is cut.
        self._fingerprints_sent = self._covers_sent = 0
        self._pool_keys: list[str] | None = None
        self._rng = random.Random(config.seed)
        self._limit = _RateLimit(config.qps)
        self._lock = threading.Lock()
        headers = dict(config.headers)
        if config.token_env is not None:
            token = os.environ.get(config.token_env)
            if not token:
                raise ConfigError(
                    f"endpoint.token_env names ${config.token_env}, which is not set; export "
                    "the token there (it is never written anywhere)"
                )
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.Client(headers=headers, timeout=config.timeout_s)

    def close(self) -> None:
        self._client.close()

    @property
    def identity(self) -> str:
        return self.config.url

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Labels of ``images`` (fingerprints), sent shuffled among cover images."""
        keys = [image_key(image) for image in images]
        todo = [i for i, key in enumerate(keys) if key not in self.log.answers]
        if todo:
            self._send([images[i] for i in todo], [keys[i] for i in todo])
        return np.array([self.log.answers[key] for key in keys], dtype=np.int64)

    def _cover_keys(self) -> list[str]:
        if self._pool_keys is None:
            self._pool_keys = [image_key(image) for image in self.cover_pool]
        return self._pool_keys

    def _send(self, fingerprints: list[np.ndarray], keys: list[str]) -> None:
        due = round((self._fingerprints_sent + len(fingerprints)) * self.config.cover_ratio)
        covers = due - self._covers_sent
        # A clean image that is also a fingerprint (AKH's are test images) is never cover: its
        # answer must be scored, and the log keys answers by image.
        wanted = set(keys)
        usable = [i for i, key in enumerate(self._cover_keys()) if key not in wanted]
        picks = self._rng.sample(usable, min(covers, len(usable)))
        cover = [(self.cover_pool[i], self._cover_keys()[i], True) for i in picks]
        items = [(image, key, False) for image, key in zip(fingerprints, keys)] + cover
        self._rng.shuffle(items)
        with self._lock:
            if self.sent + len(items) > self.config.budget:
                raise NfDistError(
                    f"querying {self.config.url} needs {len(items)} more images but only "
                    f"{self.config.budget - self.sent} of endpoint.budget remain; raise the "
                    "budget or lower endpoint.cover_ratio"
                )
            self.sent += len(items)
            self._fingerprints_sent += len(fingerprints)
            self._covers_sent += len(cover)
        batches = list(_chunks(items, self.config.batch_size))
        with ThreadPoolExecutor(max_workers=self.config.concurrency) as pool:
            for _ in pool.map(self._request, batches):
                pass

    def _request(self, batch: list[tuple[np.ndarray, str, bool]]) -> None:
        payload = {
            self.config.images_field: [base64.b64encode(png_bytes(i)).decode() for i, _, _ in batch]
        }
        last, retry_after = "no answer", None
        for attempt in range(self.config.max_retries + 1):
            if attempt:
                time.sleep(self._backoff(attempt, retry_after))
            retry_after = None
            self._limit.wait()
            with self._lock:
                self.requests += 1
            try:
                response = self._client.post(self.config.url, json=payload)
            except httpx.TransportError as exc:  # refused, reset, timed out
                last = f"{type(exc).__name__}"
                continue
            if response.status_code in RETRYABLE:
                last = f"HTTP {response.status_code}"
                retry_after = _retry_after_s(response.headers.get("Retry-After"))
                continue
            if response.status_code >= 400:
                hint = (
                    f" (check the token in ${self.config.token_env})"
                    if response.status_code in (401, 403)
                    else ""
                )
                raise NfDistError(
                    f"{self.config.url} refused the query: HTTP {response.status_code}{hint}"
                )
            labels = self._labels(response, len(batch))
            if labels is None:
                last = "a malformed answer"
                continue
            self.log.add([k for _, k, _ in batch], labels, [c for _, _, c in batch])
            return
        raise NfDistError(
            f"{self.config.url} did not answer after {self.config.max_retries + 1} attempts "
            f"(last: {last}); nothing answered so far is lost (re-run to resume), or raise "
            "endpoint.max_retries"
        )

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Full-jitter exponential backoff, at least what a Retry-After header asked for (up
        to ``max_backoff_s``)."""
        ceiling = min(self.config.max_backoff_s, self.config.backoff_s * 2 ** (attempt - 1))
        with self._lock:  # one random stream shared by the threads
            delay = self._rng.uniform(0, ceiling)
        if retry_after is None:
            return delay
        return max(delay, min(retry_after, self.config.max_backoff_s))

    def _labels(self, response: httpx.Response, count: int) -> list[int] | None:
        """The answer's labels, or None when it is malformed (retried)."""
        try:
            body = response.json()
            raw = body[self.config.labels_field]
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(raw, list) or len(raw) != count:
            return None
        labels = []
        for value in raw:
            if isinstance(value, str) and self.config.class_names:
                if value not in self.config.class_names:
                    return None
                value = self.config.class_names.index(value)
            if isinstance(value, bool) or not isinstance(value, int):
                return None
            if not 0 <= value < self.config.num_classes:
                raise NfDistError(
                    f"{self.config.url} answered label {value}, outside [0, "
                    f"{self.config.num_classes}); set endpoint.num_classes (or class_names)"
                )
            labels.append(value)
        return labels


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _retry_after_s(value: str | None) -> float | None:
    """A Retry-After header in seconds (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None
