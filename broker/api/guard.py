"""The API's outer guard: Redis away, slow clients, too many bodies at once.

    Redis unreachable or loading  -> 503 problem with Retry-After, on any endpoint that
                                     needs it; one log line when lost, one when back
    a request body that does not arrive within `api.body_timeout` -> 408, connection closed
    more than `api.max_pending_bodies` requests still sending their bodies -> 503 at once

A request's head (request line and headers) has its own deadline in the HTTP protocol
(`GuardedHttp`), since uvicorn waits for it forever; and `api.max_connections` bounds
the connections uvicorn holds (503 beyond).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from broker.api.problems import PROBLEM, problem_body
from broker.state.health import RedisHealth, is_down

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]
RETRY_AFTER_S = 2


class Guard:
    """ASGI middleware, outermost of Baton's own."""

    def __init__(
        self, app: App, health: RedisHealth, body_timeout_s: float, max_pending_bodies: int
    ) -> None:
        self.app = app
        self.health = health
        self.body_timeout_s = body_timeout_s
        self.max_pending = max_pending_bodies
        self.pending = 0  # requests whose body has not all arrived yet

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.pending >= self.max_pending:
            await _problem(send, 503, "Too many slow requests",
                           f"{self.pending} requests are still sending their bodies; "
                           "try again shortly", retry=True)  # fmt: skip
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        body = _Body(receive, self)
        self.pending += 1
        # One timer a request, not a timeout a receive: the hot path pays one call_at.
        timer = asyncio.get_running_loop().call_later(self.body_timeout_s, body.expire)
        try:
            await self.app(scope, body.receive, watched)
        except asyncio.CancelledError:
            if not body.timed_out:
                raise
            body.task.uncancel()
            if not started:
                await _problem(send, 408, "Request timeout", "the body did not arrive within "
                               f"{self.body_timeout_s:g} s", close=True)  # fmt: skip
        except Exception as exc:
            if not is_down(exc):
                raise
            self.health.lost(exc)
            if not started:
                await _problem(send, 503, "Redis unavailable",
                               "Baton cannot reach its Redis just now; nothing was written",
                               retry=True)  # fmt: skip
        finally:
            timer.cancel()
            body.done()


class _Body:
    """A request's `receive`, counted as pending until its body has all arrived; past
    the body deadline (`expire`) a request still waiting for its body is cancelled."""

    def __init__(self, receive: Receive, guard: Guard) -> None:
        self._receive = receive
        self.guard = guard
        self.task = asyncio.current_task() or _no_task()
        self.complete = False
        self.timed_out = False
        self.waiting = False  # inside a receive for the body

    def done(self) -> None:
        if not self.complete:
            self.complete = True
            self.guard.pending -= 1

    def expire(self) -> None:
        if self.complete:
            return
        self.timed_out = True
        self.done()
        if self.waiting:
            self.task.cancel()

    async def receive(self) -> Message:
        if self.timed_out:  # between two chunks when the deadline came
            raise asyncio.CancelledError
        if self.complete:  # after the body: the app may wait for a disconnect, unbounded
            return await self._receive()
        self.waiting = True
        try:
            message = await self._receive()
        finally:
            self.waiting = False
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.done()
        return message


def _no_task() -> asyncio.Task[Any]:
    raise RuntimeError("the guard runs inside the server's request task")


async def _problem(
    send: Send, status: int, title: str, detail: str, retry: bool = False, close: bool = False
) -> None:
    body = json.dumps(problem_body(status, title, detail)).encode()
    headers = [(b"content-type", PROBLEM.encode()), (b"content-length", str(len(body)).encode())]
    if retry:
        headers.append((b"retry-after", str(RETRY_AFTER_S).encode()))
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class GuardedHttp(HttpToolsProtocol):
    """uvicorn's httptools protocol that closes a connection whose request line and
    headers take longer than `head_timeout_s` from the connection (or, on a kept-alive
    connection, from the request's first byte)."""

    head_timeout_s = 10.0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _too_slow(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def guarded_http(head_timeout_s: float) -> type[GuardedHttp]:
    """`GuardedHttp` with this deadline, for `uvicorn.Config(http=...)`."""
    return type("GuardedHttp", (GuardedHttp,), {"head_timeout_s": head_timeout_s})
