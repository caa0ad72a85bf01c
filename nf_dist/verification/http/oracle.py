"""A deployed suspect as a label-only oracle, over any protocol of
:mod:`~nf_dist.verification.http.protocols`.

The client is polite and bounded: at most ``concurrency`` requests in flight and ``qps`` per
second; each request ends by its deadline and reads at most ``max_answer_bytes``
(:mod:`.transport`); retries with exponential backoff and full jitter on 429, 5xx, malformed
answers and connection errors (a ``Retry-After`` header is honoured); and a hard ``budget`` of
images on the wire, retries and cover included, kept in the query log (:mod:`.querylog`) so a
resumed run goes on counting. Every answered image is logged as soon as its request returns, so
a crash or Ctrl-C loses nothing and a re-run re-sends nothing already answered. Fingerprints go
out shuffled among clean cover images (``cover_ratio`` per fingerprint), so a batch of
fingerprints is not visible as such; only fingerprint answers are returned. A bearer token comes
only from the environment variable ``token_env``, and is never written to a log, a record or an
error message.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime

import numpy as np

from nf_dist.errors import ConfigError, NfDistError
from nf_dist.verification.http.config import EndpointConfig
from nf_dist.verification.http.images import image_key
from nf_dist.verification.http.problems import RetryableError
from nf_dist.verification.http.protocols import PROTOCOLS
from nf_dist.verification.http.querylog import BudgetSpentError, QueryLog
from nf_dist.verification.http.transport import BoundedTransport, Reply

logger = logging.getLogger(__name__)
RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})


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
    """Label-only queries to an endpoint (see the module docstring); call it with images.

    Attributes:
        sent: images this client put on the wire (retries and cover included).
        requests: requests this client made.
        log: the query log, with the counts of every run (``images_sent``, ``images_retried``).
    """

    def __init__(
        self, config: EndpointConfig, cover: np.ndarray, log_path: str | None = None
    ) -> None:
        self.config = config
        self.protocol = PROTOCOLS.get(config.protocol)(config)
        self.cover_pool = cover
        self.log = QueryLog(log_path)
        self.sent = self.requests = 0
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
        self._transport = BoundedTransport(
            headers,
            deadline_s=config.timeout_s,
            max_answer_bytes=config.max_answer_bytes,
            redirects=config.redirects,
            concurrency=config.concurrency,
        )

    def close(self) -> None:
        self._transport.close()

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
        remaining = self.config.budget - self.log.images_sent
        if len(items) > remaining:  # refuse the look before any of it goes out
            raise BudgetSpentError(
                f"querying {self.config.url} needs {len(items)} more images but only "
                f"{remaining} of endpoint.budget ({self.config.budget}) remain "
                f"({self.log.images_sent} sent, {self.log.images_retried} of them retries); "
                "raise the budget or lower endpoint.cover_ratio"
            )
        self._fingerprints_sent += len(fingerprints)
        self._covers_sent += len(cover)
        per_request = self.protocol.images_per_request or self.config.batch_size
        batches = list(_chunks(items, per_request))
        with ThreadPoolExecutor(max_workers=self.config.concurrency) as pool:
            for _ in pool.map(self._request, batches):
                pass

    def _request(self, batch: list[tuple[np.ndarray, str, bool]]) -> None:
        body, content_type = self.protocol.encode(np.stack([image for image, _, _ in batch]))
        last, retry_after = "no answer", None
        for attempt in range(self.config.max_retries + 1):
            if attempt:
                time.sleep(self._backoff(attempt, retry_after))
            retry_after = None
            self.log.reserve(len(batch), retry=attempt > 0, budget=self.config.budget)
            self._limit.wait()
            with self._lock:
                self.requests += 1
                self.sent += len(batch)
            try:
                reply = self._transport.post(self.config.url, body, content_type)
                if reply.status in RETRYABLE:
                    last = f"HTTP {reply.status}"
                    retry_after = _retry_after_s(reply.headers.get("Retry-After"))
                    continue
                self._check_status(reply)
                labels = self.protocol.decode(reply.body, len(batch))
            except RetryableError as exc:
                last = str(exc)
                continue
            self.log.add([k for _, k, _ in batch], labels, [c for _, _, c in batch])
            return
        raise NfDistError(
            f"{self.config.url} did not answer after {self.config.max_retries + 1} attempts "
            f"(last: {last}); nothing answered so far is lost (re-run to resume), or raise "
            "endpoint.max_retries"
        )

    def _check_status(self, reply: Reply) -> None:
        """Raise for an answer that is not a success (retryable statuses are handled before)."""
        if 200 <= reply.status < 300:
            return
        if reply.status in (401, 403):
            hint = (
                f"check the token in ${self.config.token_env}"
                if self.config.token_env is not None
                else "no token is configured: put it in an environment variable and name it "
                "with endpoint.token_env (--token-env)"
            )
            raise NfDistError(f"{self.config.url} refused the query: HTTP {reply.status} ({hint})")
        said = reply.body[:200].decode("utf-8", "replace")
        raise NfDistError(
            f"{self.config.url} answered HTTP {reply.status}, not an answer"
            + (f" ({said!r})" if said else "")
            + f"; check endpoint.url and endpoint.protocol ({self.config.protocol})"
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
