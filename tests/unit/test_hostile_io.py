"""Hostile I/O on both sides, on loopback, with bounded time and memory.

Client side: a server written here to misbehave (headers or body dripped a byte at a time, 200 MB
answers, padding before valid labels, a gzip bomb, a redirect carrying labels, 401, wrong label
counts) is queried by the verification client in a child process whose address space is capped
at its size after imports plus 1 GiB. Each case must end in a clear error within its deadline.

Server side: ``nf-dist serve`` (a child process, capped the same way once up) is sent image bombs,
wrong sizes and formats, too many images, oversized and dripped bodies, and a storm of 200
concurrent requests; each is refused with a clear status while ``/health`` keeps answering.

The budget: retries and resumed runs count every image on the wire.

Every server, port and process here is this module's own; loops are bounded in count and time.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from benchmarks.deployments import free_port, launched
from nf_dist.config import from_dict
from nf_dist.errors import NfDistError
from nf_dist.verification.http import BudgetSpentError, EndpointConfig, HttpOracle

HEADROOM = 1 << 30  # the address space a child may grow by after its imports
LABELS16 = json.dumps({"labels": [1] * 16}).encode()


# --- a server that misbehaves, one behaviour per path --------------------------------------------

Writer = asyncio.StreamWriter
Behaviour = Callable[[Writer], Awaitable[None]]


async def _head(writer: Writer, status: str, headers: dict[str, str]) -> None:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    writer.write("\r\n".join(lines).encode())
    await writer.drain()


async def _drip_headers(writer: Writer) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\n")
    for _ in range(120):  # one header byte every 0.5 s, for a minute at most
        writer.write(b"X")
        await writer.drain()
        await asyncio.sleep(0.5)


async def _drip_body(writer: Writer) -> None:
    await _head(writer, "200 OK", {"Content-Type": "application/json", "Content-Length": "1000"})
    for _ in range(120):
        writer.write(b" ")
        await writer.drain()
        await asyncio.sleep(0.5)


async def _stream(writer: Writer, chunks: Iterator[bytes]) -> None:
    for chunk in chunks:
        writer.write(chunk)
        await writer.drain()


def _chunked(total: int, tail: bytes = b"") -> Iterator[bytes]:
    block = b" " * 65536
    for _ in range(total // len(block)):
        yield b"%x\r\n%s\r\n" % (len(block), block)
    if tail:
        yield b"%x\r\n%s\r\n" % (len(tail), tail)
    yield b"0\r\n\r\n"


async def _huge_declared(writer: Writer) -> None:
    await _head(writer, "200 OK", {"Content-Length": str(200 << 20)})
    await _stream(writer, (b"0" * 65536 for _ in range(3200)))


async def _padding_then_labels(writer: Writer) -> None:
    await _head(writer, "200 OK", {"Transfer-Encoding": "chunked"})
    await _stream(writer, _chunked(200 << 20, LABELS16))


async def _redirect_with_labels(writer: Writer) -> None:
    headers = {"Location": "/elsewhere", "Content-Length": str(len(LABELS16))}
    await _head(writer, "302 Found", {**headers, "Content-Type": "application/json"})
    writer.write(LABELS16)


async def _moved(writer: Writer) -> None:
    await _head(writer, "307 Temporary Redirect", {"Location": "/labels", "Content-Length": "0"})


async def _moved_away(writer: Writer) -> None:
    port = writer.get_extra_info("sockname")[1]
    location = f"http://localhost:{port}/labels"  # the same server under another host name
    await _head(writer, "307 Temporary Redirect", {"Location": location, "Content-Length": "0"})


async def _labels(writer: Writer) -> None:
    await _head(writer, "200 OK", {"Content-Length": str(len(LABELS16))})
    writer.write(LABELS16)


async def _unauthorised(writer: Writer) -> None:
    await _head(writer, "401 Unauthorized", {"Content-Length": "0"})


async def _three_labels(writer: Writer) -> None:
    body = b'{"labels": [1, 2, 3]}'
    await _head(writer, "200 OK", {"Content-Length": str(len(body))})
    writer.write(body)


async def _label_twelve(writer: Writer) -> None:
    body = json.dumps({"labels": [12] * 16}).encode()
    await _head(writer, "200 OK", {"Content-Length": str(len(body))})
    writer.write(body)


class HostileServer:
    """Answers each path with its behaviour; runs on its own loop in a thread."""

    def __init__(self, bomb: bytes) -> None:
        async def gzip_bomb(writer: Writer) -> None:
            headers = {"Content-Encoding": "gzip", "Content-Length": str(len(bomb))}
            await _head(writer, "200 OK", headers)
            await _stream(writer, (bomb[i : i + 65536] for i in range(0, len(bomb), 65536)))

        self.behaviours: dict[str, Behaviour] = {
            "/drip-headers": _drip_headers,
            "/drip-body": _drip_body,
            "/huge-declared": _huge_declared,
            "/padding-then-labels": _padding_then_labels,
            "/gzip-bomb": gzip_bomb,
            "/redirect-with-labels": _redirect_with_labels,
            "/unauthorised": _unauthorised,
            "/moved": _moved,
            "/moved-away": _moved_away,
            "/labels": _labels,
            "/three-labels": _three_labels,
            "/label-twelve": _label_twelve,
        }
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self.loop
        ).result()
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: Writer) -> None:
        try:
            path = (await reader.readline()).split()[1].decode()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                length = int(value) if name.lower() == "content-length" else length
            await reader.readexactly(length)
            await self.behaviours[path](writer)
            await writer.drain()
        except (ConnectionError, IndexError, KeyError, asyncio.IncompleteReadError):
            pass  # the client hung up, as it should
        finally:
            writer.close()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def _gzip_bomb(unpacked: int = 1 << 30) -> bytes:
    """``unpacked`` zero bytes, gzipped (1 GiB -> about 1 MB)."""
    packer = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1 << 20)
    return b"".join(packer.compress(block) for _ in range(unpacked >> 20)) + packer.flush()


# The client side runs in a child whose address space is capped after its imports.
CLIENT = r"""
import json, resource, sys, time
import numpy as np
from nf_dist.config import from_dict
from nf_dist.verification.http import EndpointConfig, HttpOracle

size = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (size + int(sys.argv[2]), size + int(sys.argv[2])))
images = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"path": "baseline", "peak_rss": baseline}), flush=True)
for path in sys.argv[3:]:
    settings = {"url": sys.argv[1] + path, "timeout_s": 2.0, "max_retries": 1, "backoff_s": 0.01,
                "max_answer_bytes": 1 << 20, "cover_ratio": 0.0, "batch_size": 16}
    oracle = HttpOracle(from_dict(EndpointConfig, settings), images[:0])
    start = time.monotonic()
    try:
        oracle(images)
        error = None
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
    oracle.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"path": path, "error": error, "seconds": time.monotonic() - start,
                      "peak_rss": peak}), flush=True)
"""

CLIENT_CASES = {
    # path: (words the error must hold, most seconds: 2 attempts of the 2 s deadline + slack)
    "/drip-headers": ("no complete answer within the 2 s deadline", 8),
    "/drip-body": ("no complete answer within the 2 s deadline", 8),
    "/huge-declared": ("declares 209,715,200 bytes, more than endpoint.max_answer_bytes", 4),
    "/padding-then-labels": ("sent more than endpoint.max_answer_bytes", 4),
    "/gzip-bomb": ("counted after decompression", 4),
    "/redirect-with-labels": ("redirects are refused", 4),
    "/unauthorised": ("no token is configured", 4),
    "/three-labels": ("answered 3 labels in labels for 16 images", 4),
    "/label-twelve": ("outside [0, 10)", 4),
}


@pytest.fixture(scope="module")
def client_results() -> dict[str, dict]:
    server = HostileServer(_gzip_bomb())
    try:
        child = subprocess.run(
            [sys.executable, "-c", CLIENT, f"http://127.0.0.1:{server.port}", str(HEADROOM)]
            + list(CLIENT_CASES),
            capture_output=True,
            text=True,
            timeout=180,
            env={**os.environ, "MALLOC_ARENA_MAX": "2"},
        )
    finally:
        server.close()
    assert child.returncode == 0, child.stderr[-2000:]
    rows = [json.loads(line) for line in child.stdout.splitlines() if line.startswith("{")]
    return {row["path"]: row for row in rows}


@pytest.mark.parametrize("path", list(CLIENT_CASES))
def test_a_hostile_api_ends_in_a_clear_error_within_its_deadline(
    client_results: dict[str, dict], path: str
) -> None:
    words, most_seconds = CLIENT_CASES[path]
    row = client_results[path]
    assert row["error"] is not None and words in row["error"], row
    assert "MemoryError" not in row["error"]
    assert row["seconds"] < most_seconds, row


def test_the_client_stays_small_through_every_hostile_answer(
    client_results: dict[str, dict],
) -> None:
    # 200 MB answers and a 1 GiB bomb were refused at the 1 MiB cap: the child's peak resident
    # memory grew by a few megabytes over its imports, not by the bodies it was sent.
    baseline = client_results["baseline"]["peak_rss"]
    assert max(row["peak_rss"] for row in client_results.values()) - baseline < 64 << 20


def test_redirects_are_followed_only_when_configured_and_only_to_the_same_host() -> None:
    server = HostileServer(b"")
    images = np.zeros((16, 32, 32, 3), np.uint8)
    base = {"cover_ratio": 0.0, "max_retries": 0, "timeout_s": 5.0}

    def ask(path: str, redirects: str) -> np.ndarray:
        url = f"http://127.0.0.1:{server.port}{path}"
        settings = {**base, "url": url, "redirects": redirects}
        oracle = HttpOracle(from_dict(EndpointConfig, settings), images[:0])
        try:
            return oracle(images)
        finally:
            oracle.close()

    try:
        with pytest.raises(NfDistError, match="redirects are refused"):
            ask("/moved", "refuse")
        assert list(ask("/moved", "same-host")) == [1] * 16
        with pytest.raises(NfDistError, match="another host"):
            ask("/moved-away", "same-host")
    finally:
        server.close()


# --- nf-dist serve under attack ------------------------------------------------------------------


def _png(image: Image.Image, **options: object) -> str:
    buffer = io.BytesIO()
    image.save(buffer, **options)  # type: ignore[arg-type]
    return base64.b64encode(buffer.getvalue()).decode()


def _vm(pid: int, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split(f"{field}:")[1].split()[0]) * 1024


@pytest.fixture(scope="module")
def suspect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """``nf-dist serve`` of an untrained tiny model, token required, its address space capped
    at its size once up plus 1 GiB."""
    import torch

    from nf_dist.models import create_classifier
    from nf_dist.models.checkpoint import save_classifier

    torch.manual_seed(0)
    model = save_classifier(
        create_classifier("vgg13_bn", width=0.125, stem_stride=2),
        str(tmp_path_factory.mktemp("hostile") / "suspect"),
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = ["-m", "nf_dist.cli", "serve", model, "--port", str(port), "--token-env", "NF_HOSTILE"]
    argv += ["--max-queue", "4", "--body-timeout", "2", "--max-batch", "256"]
    env = {"NF_HOSTILE": "hostile-token", "MALLOC_ARENA_MAX": "2"}
    with launched(argv, f"{url}/health", env=env) as process:
        cap = _vm(process.pid, "VmSize") + HEADROOM
        resource.prlimit(process.pid, resource.RLIMIT_AS, (cap, cap))  # our own child, by PID
        yield url, process.pid
        assert process.poll() is None, "the server died"


AUTH = {"Authorization": "Bearer hostile-token"}


def _predict(url: str, items: list[str], headers: dict | None = None) -> httpx.Response:
    return httpx.post(f"{url}/predict", json={"images": items}, headers=headers or AUTH, timeout=30)


@pytest.fixture(scope="module")
def bombs() -> dict[str, str]:
    """Real PNGs: grey images that compress to kilobytes and decode to gigabytes."""
    return {
        side: _png(Image.new("L", (int(side), int(side)), 128), format="PNG")
        for side in ("9000", "4000", "10000")
    }


@pytest.mark.parametrize(
    ("make", "status", "words"),
    [
        (lambda b: [b["9000"]], 413, "declares 9000 x 9000 pixels"),
        (lambda b: [b["10000"]], 413, "declares 10000 x 10000 pixels"),  # past PIL's bomb limit
        (lambda b: [b["4000"]], 413, "declares 4000 x 4000 pixels"),
        (lambda b: [_png(Image.new("RGB", (64, 64)), format="PNG")], 422, "is 64 x 64"),
        (lambda b: [_png(Image.new("RGB", (1, 1)), format="PNG")], 422, "is 1 x 1"),
        (lambda b: [_png(Image.new("RGB", (32, 32)), format="JPEG")], 415, "is JPEG, not PNG"),
        (lambda b: [_png(Image.new("P", (32, 32)), format="GIF")], 415, "is GIF, not PNG"),
        (lambda b: ["not base64!"], 400, "is not base64"),
        (lambda b: [_png(Image.new("RGB", (1, 1)), format="PNG")] * 10_000, 413, "at most 256"),
    ],
)
def test_the_server_refuses_bad_images_before_decoding_them(
    suspect_server: tuple[str, int], bombs: dict[str, str], make: Callable, status: int, words: str
) -> None:
    url, pid = suspect_server
    start = time.monotonic()
    answer = _predict(url, make(bombs))
    assert answer.status_code == status and words in answer.json()["error"], answer.text
    assert time.monotonic() - start < 5
    assert _vm(pid, "VmRSS") < 2 << 30


def test_the_server_refuses_large_and_slow_bodies(suspect_server: tuple[str, int]) -> None:
    url, _ = suspect_server
    answer = httpx.post(f"{url}/predict", content=b" " * (17 << 20), headers=AUTH, timeout=30)
    assert answer.status_code == 413 and "larger than" in answer.json()["error"]
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as drip:
        head = "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
        drip.sendall(f"{head}Authorization: Bearer hostile-token\r\n\r\n".encode())
        start = time.monotonic()
        for _ in range(6):  # a byte every 0.5 s: the 2 s body deadline passes first
            drip.sendall(b"{")
            time.sleep(0.5)
        answer_bytes = drip.recv(4096)
    assert answer_bytes.startswith(b"HTTP/1.1 408"), answer_bytes[:200]
    assert time.monotonic() - start < 6


def test_the_token_guards_predict_and_stats_and_the_scheme_is_any_case(
    suspect_server: tuple[str, int],
) -> None:
    url, _ = suspect_server
    image = _png(Image.new("RGB", (32, 32)), format="PNG")
    assert _predict(url, [image], {"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(f"{url}/stats").status_code == 401
    assert _predict(url, [image], {"Authorization": "bearer hostile-token"}).status_code == 200
    assert httpx.get(f"{url}/stats", headers={"authorization": "BEARER hostile-token"}).is_success
    assert httpx.get(f"{url}/health").json() == {"ok": True}  # no token needed


def test_a_storm_is_answered_429_while_health_answers_at_once(
    suspect_server: tuple[str, int],
) -> None:
    url, _ = suspect_server
    items = [
        _png(Image.fromarray(np.full((32, 32, 3), i, np.uint8)), format="PNG") for i in range(256)
    ]

    async def storm() -> tuple[list[httpx.Response], list[float]]:
        limits = httpx.Limits(max_connections=250)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            requests = [
                client.post(f"{url}/predict", json={"images": items}, headers=AUTH)
                for _ in range(200)
            ]
            flood = asyncio.gather(*requests)
            waits = []
            for _ in range(10):  # /health while the storm runs
                start = time.monotonic()
                assert (await client.get(f"{url}/health")).status_code == 200
                waits.append(time.monotonic() - start)
                await asyncio.sleep(0.1)
            return await flood, waits

    started = time.monotonic()
    answers, waits = asyncio.run(storm())
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {200, 429} and statuses.count(429) >= 100, statuses
    assert all(a.headers.get("retry-after") for a in answers if a.status_code == 429)
    assert max(waits) < 1.0, waits
    assert time.monotonic() - started < 60


# --- the budget -----------------------------------------------------------------------------------


def test_retries_and_resumed_runs_spend_the_same_budget(tmp_path: Path) -> None:
    """A flaky server makes retries; each image on the wire counts, and a resumed run goes on
    from the count the log holds (the server's own count agrees)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    flaky_argv = _flaky_server_argv(tmp_path, port)
    images = np.random.default_rng(1).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    log = str(tmp_path / "queries.jsonl")
    settings = {
        "url": f"{url}/predict",
        "batch_size": 4,
        "backoff_s": 0.01,
        "max_backoff_s": 0.05,
        "max_retries": 10,
        "cover_ratio": 0.0,
        "budget": 30,
    }

    def run(budget: int) -> Exception | None:
        oracle = HttpOracle(
            from_dict(EndpointConfig, {**settings, "budget": budget}), images[:0], log
        )
        try:
            oracle(images)
            return None
        except NfDistError as exc:
            return exc
        finally:
            oracle.close()

    with launched(flaky_argv, f"{url}/health"):
        first = run(30)
        received = httpx.get(f"{url}/stats").json()["images_received"]
        assert isinstance(first, BudgetSpentError) and received <= 30
        again = run(30)  # resumed: the count goes on, nothing more is sent
        assert isinstance(again, BudgetSpentError)
        assert httpx.get(f"{url}/stats").json()["images_received"] == received
        assert run(400) is None  # a raised budget finishes the run
        stats = httpx.get(f"{url}/stats").json()
    lines = [json.loads(line) for line in Path(log).read_text().splitlines()]
    sent = sum(line["sent"] for line in lines if "sent" in line)
    retried = sum(line["sent"] for line in lines if line.get("retry"))
    answered = [line["key"] for line in lines if "key" in line]
    assert sent == stats["images_received"] and retried > 0
    assert len(answered) == len(set(answered)) == 20 == stats["images_answered"]


def _flaky_server_argv(tmp_path: Path, port: int) -> list[str]:
    import torch

    from nf_dist.models import create_classifier
    from nf_dist.models.checkpoint import save_classifier

    torch.manual_seed(0)
    model = save_classifier(
        create_classifier("vgg13_bn", width=0.125, stem_stride=2), str(tmp_path / "flaky")
    )
    flaky = ["--fail-500", "0.5", "--seed", "3"]
    return ["-m", "nf_dist.cli", "serve", model, "--port", str(port), *flaky]
