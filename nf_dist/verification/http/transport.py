"""Bounded HTTP: every request ends by its deadline and reads at most a cap of answer bytes.

An API under the suspect's control may drip its headers or its body a byte at a time, send
gigabytes, a gzip bomb, or a redirect that carries an answer. Per-read timeouts restart with every
byte, so the deadline here covers the whole exchange (connect, headers, body) and cancels it when
passed. The body is streamed and decompressed here, not by the HTTP library, so that the cap
counts decompressed bytes and decompression stops at the cap (a 1 MB bomb is refused after
reading ``max_answer_bytes``, not after inflating to a gigabyte). Redirects are refused, or
followed to the same scheme, host and port only (307/308, which keep the POST and its body).

Requests run on one event loop in a background thread, so the client can be used from any
thread, and from code that already runs an event loop.
"""

from __future__ import annotations

import asyncio
import threading
import zlib
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urljoin, urlsplit

import httpx

from nf_dist.verification.http.problems import EndpointError, RetryableError

MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class Reply:
    """A complete answer: its status, headers and decompressed body."""

    status: int
    headers: httpx.Headers
    body: bytes


class BoundedTransport:
    """POSTs with a deadline, an answer cap and a redirect policy (see the module docstring).

    Args:
        headers: sent with every request.
        deadline_s: the most seconds one exchange (redirects included) may take.
        max_answer_bytes: the most body bytes read, after decompression.
        redirects: ``refuse`` or ``same-host``.
        concurrency: connections kept at once.
    """

    def __init__(
        self,
        headers: dict[str, str],
        *,
        deadline_s: float,
        max_answer_bytes: int,
        redirects: Literal["refuse", "same-host"] = "refuse",
        concurrency: int = 4,
    ) -> None:
        self.deadline_s, self.max_answer_bytes, self.redirects = (
            deadline_s,
            max_answer_bytes,
            redirects,
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="nf-dist-http", daemon=True
        )
        self._thread.start()
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        # The library's own decompression would inflate before the cap could count: ask only
        # for encodings decoded here.
        sent = {**headers, "Accept-Encoding": "gzip, deflate"}
        self._client = httpx.AsyncClient(
            headers=sent, timeout=deadline_s, limits=limits, follow_redirects=False
        )

    def post(self, url: str, body: bytes, content_type: str) -> Reply:
        """One exchange, within the deadline.

        Raises:
            RetryableError: no complete answer in time, or the connection failed.
            EndpointError: a refused redirect, an answer past the cap or in an unknown encoding.
        """
        exchange = self._exchange(url, body, content_type)
        return asyncio.run_coroutine_threadsafe(exchange, self._loop).result()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self._client.aclose(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _exchange(self, url: str, body: bytes, content_type: str) -> Reply:
        try:
            return await asyncio.wait_for(self._follow(url, body, content_type), self.deadline_s)
        except asyncio.TimeoutError:
            raise RetryableError(
                f"no complete answer within the {self.deadline_s:g} s deadline (endpoint.timeout_s)"
            ) from None
        except httpx.TransportError as exc:  # refused, reset, a malformed HTTP stream
            raise RetryableError(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None

    async def _follow(self, url: str, body: bytes, content_type: str) -> Reply:
        start = url
        for _ in range(MAX_REDIRECTS + 1):
            headers = {"Content-Type": content_type}
            async with self._client.stream("POST", url, content=body, headers=headers) as answer:
                location = answer.headers.get("location")
                if answer.status_code not in _REDIRECTS or location is None:
                    data = await self._read(url, answer)
                    return Reply(answer.status_code, answer.headers, data)
                url = self._redirect(start, url, answer.status_code, urljoin(url, location))
        raise EndpointError(f"{start} redirected more than {MAX_REDIRECTS} times; refused")

    def _redirect(self, start: str, url: str, status: int, target: str) -> str:
        """The redirect's target when policy allows it; otherwise a clear error."""
        if self.redirects == "refuse":
            raise EndpointError(
                f"{url} answered HTTP {status}, a redirect to {target}; redirects are refused "
                "(an answer from elsewhere is not the suspect's): set endpoint.url to the final "
                "address, or endpoint.redirects: same-host"
            )
        here, there = urlsplit(start), urlsplit(target)
        if (here.scheme, here.hostname, here.port) != (there.scheme, there.hostname, there.port):
            raise EndpointError(
                f"{url} redirected to {target}, another host; only same-host redirects are "
                "followed: set endpoint.url to the final address if it is the suspect"
            )
        if status not in (307, 308):
            raise EndpointError(
                f"{url} answered HTTP {status}, which turns the POST into a GET; set "
                f"endpoint.url to {target}"
            )
        return target

    async def _read(self, url: str, answer: httpx.Response) -> bytes:
        declared = answer.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_answer_bytes:
            raise self._too_large(url, f"declares {int(declared):,} bytes, more")
        decoder = _Decoder(url, answer.headers.get("content-encoding", ""))
        body = bytearray()
        async for chunk in answer.aiter_raw():
            for piece in decoder.feed(chunk, self.max_answer_bytes - len(body) + 1):
                body += piece
                if len(body) > self.max_answer_bytes:
                    raise self._too_large(url, "sent more")
        body += decoder.finish()
        if len(body) > self.max_answer_bytes:
            raise self._too_large(url, "sent more")
        return bytes(body)

    def _too_large(self, url: str, what: str) -> EndpointError:
        return EndpointError(
            f"{url} {what} than endpoint.max_answer_bytes ({self.max_answer_bytes:,} bytes, "
            "counted after decompression); refused without reading further. Labels are small: "
            "check the URL, or raise endpoint.max_answer_bytes"
        )


class _Decoder:
    """Incremental gzip / deflate decoding that never inflates past a given room."""

    def __init__(self, url: str, encoding: str) -> None:
        name = encoding.strip().lower()
        if name in ("", "identity"):
            self._inflate = None
        elif name in ("gzip", "x-gzip"):
            self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif name == "deflate":
            self._inflate = zlib.decompressobj()
        else:
            raise EndpointError(
                f"{url} answered with Content-Encoding {encoding!r}; only gzip, deflate and "
                "none are accepted (and asked for)"
            )

    def feed(self, chunk: bytes, room: int) -> list[bytes]:
        """Decoded pieces of ``chunk``; stops once more than ``room`` bytes came out."""
        if self._inflate is None:
            return [chunk]
        pieces, data = [], chunk
        try:
            while data and room > 0:
                piece = self._inflate.decompress(data, room)
                pieces.append(piece)
                room -= len(piece)
                data = self._inflate.unconsumed_tail
        except zlib.error as exc:
            raise RetryableError(f"answered a corrupt compressed body ({exc})") from None
        return pieces

    def finish(self) -> bytes:
        if self._inflate is None:
            return b""
        if not self._inflate.eof:
            raise RetryableError("answered a truncated compressed body")
        return self._inflate.flush()
