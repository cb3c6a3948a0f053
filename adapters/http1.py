"""A keep-alive HTTP/1.1 client for the webhook target: one request at a time per
connection, on an asyncio protocol with httptools' parser (llhttp, as uvicorn uses).

Webhooks are the hot path's outbound call: at saturation aiohttp's request machinery
(its request and response objects, connector, timers and stream writers) was a quarter
of a worker's CPU, ~210 us per POST on this 2-core host against ~70 us here. What a
webhook needs is small, and is all here:
- http and https (the system's default TLS context), IPv6 literals, user:password@
  as Basic auth;
- keep-alive, a few idle connections kept per host; a connection the receiver closed
  while it was idle is noticed and not used, and one that proves stale on reuse (closed
  before a byte of the answer came) is replaced and the request sent once more;
- answers by Content-Length, chunked, or to the end of the connection; only the first
  `max_body` bytes are kept, and a longer answer ends its connection;
- no redirects followed (the target is the URL configured), no proxies, no cookies;
- a header name that is not an HTTP token, or a value with CR, LF or NUL, is refused
  (`ValueError`) rather than sent: templates render headers;
- one total timeout per request (connect, send, answer): `TimeoutError`; a failed or
  abandoned exchange ends its connection, so no late answer is read as another's.
Transport failures are `OSError`s (`ConnectionError` when the receiver hangs up
mid-answer), as `adapters._http.translate_errors` expects.
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
from collections.abc import Mapping
from functools import lru_cache
from typing import NamedTuple, cast
from urllib.parse import quote, unquote, urlsplit

import httptools

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\r\n\x00]")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"


class Answer(NamedTuple):
    status: int
    headers: dict[str, str]  # names lower-cased; a repeated header's last value
    body: bytes  # at most `max_body` bytes


class _Stale(Exception):
    """A reused connection ended before a byte of the answer came."""


class _Exchange(asyncio.Protocol):
    """One connection: a request written, its answer parsed; then maybe the next."""

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.uses = 0
        self._future: asyncio.Future[Answer] | None = None
        self._reset()

    def _reset(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._size = 0
        self._got_bytes = False
        self._headers_done = False
        self._keep = False
        self._over = False

    # -- one request -------------------------------------------------------------
    def send(self, request: bytes) -> asyncio.Future[Answer]:
        assert self.transport is not None and self._future is None
        self._reset()
        self.uses += 1
        self._future = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self._future

    def reusable(self) -> bool:
        return not self.closed and self._future is None and self._keep

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # -- asyncio.Protocol ---------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self._future is None:  # bytes nobody asked for: the connection is unusable
            self.close()
            return
        self._got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"the answer is not HTTP: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._future is None:
            return
        if self._headers_done and not self._framed():  # an answer read to its end
            self._done()
        elif not self._got_bytes and self.uses > 1:
            self._fail(_Stale())
        else:
            self._fail(ConnectionError(f"the receiver hung up mid-answer ({exc or 'EOF'})"))

    # -- httptools callbacks -----------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._headers_done = True
        self._keep = self._parser.should_keep_alive()  # only known while it is parsed

    def on_body(self, body: bytes) -> None:
        room = self.max_body - self._size
        if room > 0:
            self._body.append(body[:room])
        self._size += len(body)
        if self._size > self.max_body and not self._over:  # enough: end it here
            self._over = True
            self._done()
            self.close()

    def on_message_complete(self) -> None:
        if 100 <= self._parser.get_status_code() < 200:  # 103 Early Hints and the like:
            self._headers, self._headers_done = {}, False  # the answer is still to come
            return
        if not self._over:
            self._done()

    # -- endings -----------------------------------------------------------------
    def _framed(self) -> bool:
        return "content-length" in self._headers or "transfer-encoding" in self._headers

    def _done(self) -> None:
        future, self._future = self._future, None
        if future is not None and not future.done():
            status = self._parser.get_status_code()
            future.set_result(Answer(status, self._headers, b"".join(self._body)))

    def _fail(self, exc: Exception) -> None:
        future, self._future = self._future, None
        self.close()
        if future is not None and not future.done():
            future.set_exception(exc)


class Http1:
    def __init__(
        self, max_idle_per_host: int = 32, max_body: int = 1 << 20,
        tls: ssl.SSLContext | None = None,
    ) -> None:  # fmt: skip
        """`tls`: the context https is verified with (the system's trust by default)."""
        self.max_idle_per_host = max_idle_per_host
        self.max_body = max_body
        self._idle: dict[tuple[str, str, int], list[_Exchange]] = {}
        self._tls = tls

    async def request(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> Answer:
        """Send one request and read its answer, within `timeout` seconds in all."""
        where, head = _request_head(method, url, body, headers)
        key = scheme, host, port = where.scheme, where.host, where.port
        async with asyncio.timeout(timeout):
            for _ in range(2):  # a stale keep-alive connection is replaced once
                exchange = self._checkout(key) or await self._connect(scheme, host, port)
                try:
                    answer = await exchange.send(head + body)
                except _Stale:
                    continue
                except BaseException:  # cancelled, timed out: its answer is nobody's
                    exchange.close()
                    raise
                self._checkin(key, exchange)
                return answer
            raise ConnectionError(f"{host}:{port} closed the connection before answering")

    def _checkout(self, key: tuple[str, str, int]) -> _Exchange | None:
        idle = self._idle.get(key)
        while idle:
            exchange = idle.pop()
            if not exchange.closed:
                return exchange
        return None

    def _checkin(self, key: tuple[str, str, int], exchange: _Exchange) -> None:
        idle = self._idle.setdefault(key, [])
        if exchange.reusable() and len(idle) < self.max_idle_per_host:
            idle.append(exchange)
        else:
            exchange.close()

    async def _connect(self, scheme: str, host: str, port: int) -> _Exchange:
        loop = asyncio.get_running_loop()
        tls = None
        if scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        _, exchange = await loop.create_connection(
            lambda: _Exchange(self.max_body), host, port, ssl=tls,
            server_hostname=host if tls is not None else None,
        )  # fmt: skip
        return exchange

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for exchange in idle:
                exchange.close()
        self._idle.clear()


class _Url(NamedTuple):
    scheme: str
    host: str
    port: int
    target: str  # the request target: path and query, %-escaped
    fields: dict[str, tuple[str, str]]  # Host, and Authorization from user:password@


@lru_cache(maxsize=1024)
def _split(url: str) -> _Url:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    host, port = parts.hostname, parts.port or _DEFAULT_PORTS[scheme]
    # As yarl sends it: what is not allowed in a request target is %-escaped, and what
    # is escaped already stays as it is.
    target = quote(parts.path or "/", safe=_PATH_SAFE)
    if parts.query:
        target += "?" + quote(parts.query, safe=_QUERY_SAFE)
    shown = f"[{host}]" if ":" in host else host
    fields = {"host": ("Host", shown if port == _DEFAULT_PORTS[scheme] else f"{shown}:{port}")}
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        fields["authorization"] = ("Authorization", "Basic " + base64.b64encode(
            pair.encode()).decode())  # fmt: skip
    return _Url(scheme, host, port, target, fields)


def _request_head(
    method: str, url: str, body: bytes, headers: Mapping[str, str]
) -> tuple[_Url, bytes]:
    """Where `url` is, and the request's head as bytes."""
    where = _split(url)
    fields = {**where.fields, "user-agent": ("User-Agent", "Baton"), "accept": ("Accept", "*/*")}
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"header name {name!r} is not an HTTP token")
        if _BAD_VALUE.search(value):
            raise ValueError(f"header {name!r}: the value holds a CR, LF or NUL")
        fields[name.lower()] = (name, value)
    for framing in ("content-length", "transfer-encoding", "connection"):
        fields.pop(framing, None)  # Baton frames the body itself
    if body or method in ("POST", "PUT", "PATCH"):
        fields["content-length"] = ("Content-Length", str(len(body)))
    lines = [f"{method} {where.target} HTTP/1.1", *(f"{n}: {v}" for n, v in fields.values())]
    return where, ("\r\n".join(lines) + "\r\n\r\n").encode()
