"""The query log: every image put on the wire and every answer, as JSON lines, fsynced.

Two kinds of line:

- ``{"sent": n, "retry": bool, "time"}``: written *before* a request goes out, so that an image
  on the wire is counted even when the answer never comes (a crash, a kill, a deadline).
- ``{"key", "label", "time", "cover"}``: one answered image, keyed by the sha256 of its PNG.

The budget is a number of images on the wire: the sum of ``sent`` lines, across retries, cover
traffic and every run that appended to the log. A log written before ``sent`` lines existed
counts one image per answer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from pathlib import Path

from nf_dist.errors import NfDistError

logger = logging.getLogger(__name__)


class BudgetSpentError(NfDistError):
    """Sending more would exceed ``endpoint.budget``."""


class QueryLog:
    """Answers by image key, and the images sent (see the module docstring).

    Attributes:
        answers: label per answered image key.
        records: the answer lines, in order.
        images_sent, images_retried: images put on the wire (all runs), and those of them that
            were retries.
    """

    def __init__(self, path: str | None) -> None:
        self.path = Path(path) if path else None
        self.answers: dict[str, int] = {}
        self.records: list[dict] = []
        self.images_sent = self.images_retried = 0
        self._lock = threading.Lock()
        counted = False
        if self.path is not None and self.path.exists():
            for number, line in enumerate(self.path.read_text().splitlines(), start=1):
                try:
                    record = json.loads(line)
                    if "sent" in record:
                        self.images_sent += int(record["sent"])
                        self.images_retried += int(record["sent"]) if record.get("retry") else 0
                        counted = True
                        continue
                    self.answers[str(record["key"])] = int(record["label"])
                    self.records.append(record)
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    logger.warning("%s:%d is not a log record; ignoring it", self.path, number)
        if not counted:
            self.images_sent = len(self.records)

    def reserve(self, count: int, retry: bool, budget: int) -> None:
        """Count ``count`` images about to go on the wire, or refuse when over ``budget``.

        Raises:
            BudgetSpentError: ``images_sent + count > budget`` (nothing is sent, nothing lost).
        """
        with self._lock:
            if self.images_sent + count > budget:
                raise BudgetSpentError(
                    f"endpoint.budget is {budget} images and {self.images_sent} are spent "
                    f"({self.images_retried} of them retries, {len(self.records)} answered); "
                    f"{count} more would pass it. Nothing answered is lost: raise the budget "
                    "and re-run with the same evidence directory to go on"
                )
            self.images_sent += count
            self.images_retried += count if retry else 0
            self._append([{"sent": count, "retry": retry, "time": _now()}])

    def add(self, keys: list[str], labels: list[int], cover: list[bool]) -> None:
        """Record one answered batch (appended and flushed before anything else is sent)."""
        stamp = _now()
        new: list[dict] = [
            {"key": k, "label": int(v), "time": stamp, "cover": c}
            for k, v, c in zip(keys, labels, cover)
        ]
        with self._lock:
            self.answers.update(zip(keys, map(int, labels)))
            self.records.extend(new)
            self._append(new)

    def sha256(self) -> str | None:
        """The log file's hash (what the evidence records), None without a file."""
        if self.path is None or not self.path.exists():
            return None
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    def _append(self, lines: list[dict]) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as sink:
            sink.write("".join(json.dumps(line) + "\n" for line in lines))
            sink.flush()
            os.fsync(sink.fileno())


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
