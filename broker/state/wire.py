"""One Redis connection for the hot paths, pipelined: commands are written the moment
they are sent, and the replies are handed back in order as they arrive.

redis-py's asyncio client spends ~110 us of CPU around each round trip on this
2-core host (a SET: 167 us through the client, 126 us on a bare `Connection`, 56 us
here): a pool checkout, a retry wrapper, an `asyncio.wait_for` per read, a
`StreamReader` between the socket and the parser, and observability hooks. A worker
makes three such round trips per event (read, record, finish), so at 100 events/s
they were a third of its CPU.

What is still redis-py's: the connection itself. A `Wire` takes one connection out of
its client's pool (opened, authenticated and on its database as the URL said, TLS or
a Unix socket included) and keeps it; the pool still owns it, so the client's
`aclose()` closes it too. Only the reading and writing are done here: the transport's
protocol is swapped for one that feeds a hiredis reader and resolves one future per
command (or per batch of commands).

What callers get, as from the client:
- replies raw (bytes, lists, ints; maps too, as the connection speaks RESP3 when the
  client does), with no response callbacks;
- a Redis error reply as redis-py's exception for it (`NoScriptError`, `ReadOnlyError`,
  `ResponseError` ...): raised by `call`, returned in its place by `many`;
- a lost connection as `ConnectionError` for the commands in flight, and a reply
  overdue past the client's `socket_timeout` as `TimeoutError` (the connection is then
  dropped: later replies could no longer be told apart). The next command opens a new
  connection, so a Redis that restarted between two commands costs nothing.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from contextlib import suppress
from typing import Any

import hiredis
from redis._parsers import BaseParser
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, InvalidResponse
from redis.exceptions import TimeoutError as RedisTimeoutError

Command = Sequence[Any]
_INCOMPLETE = object()  # not `False`: in RESP3 (redis-py's default), False is a reply


class _Waiting:
    __slots__ = ("due", "future", "left", "replies")

    def __init__(self, future: asyncio.Future[Any], left: int, due: float) -> None:
        self.future = future
        self.left = left
        self.replies: list[Any] = []
        self.due = due


class _Replies(asyncio.Protocol):
    """The protocol a `Wire` puts on its connection's transport."""

    def __init__(
        self, transport: asyncio.Transport, replaced: asyncio.BaseProtocol, timeout: float | None
    ) -> None:
        self.transport = transport
        # The stream protocol redis-py's connection was made with: told when the
        # connection ends, so that the pool's `disconnect()` does not wait for it.
        self.replaced = replaced
        self.timeout = timeout
        self.reader = hiredis.Reader(protocolError=InvalidResponse, notEnoughData=_INCOMPLETE,
                                     replyError=BaseParser.parse_error)  # fmt: skip
        self.waiting: deque[_Waiting] = deque()
        self.lost: Exception | None = None
        self._watch: asyncio.TimerHandle | None = None

    # -- sending -----------------------------------------------------------------
    def send(self, packed: bytes, replies: int) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        due = loop.time() + self.timeout if self.timeout else 0.0
        self.waiting.append(_Waiting(future, replies, due))
        self.transport.write(packed)
        if self._watch is None and self.timeout:
            self._watch = loop.call_at(due, self._overdue)
        return future

    # -- receiving ---------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiting = self.waiting
        try:
            while waiting:
                reply = self.reader.gets()
                if reply is _INCOMPLETE:
                    return
                head = waiting[0]
                head.replies.append(reply)
                head.left -= 1
                if head.left == 0:
                    waiting.popleft()
                    if not head.future.done():  # else its caller was cancelled
                        head.future.set_result(head.replies)
        except InvalidResponse as exc:  # the stream can no longer be read: end it
            self._end(RedisConnectionError(f"Protocol error from Redis: {exc}"))

    def _overdue(self) -> None:
        self._watch = None
        if not self.waiting:
            return
        head = self.waiting[0]
        loop = asyncio.get_running_loop()
        if loop.time() < head.due:
            self._watch = loop.call_at(head.due, self._overdue)
            return
        self._end(RedisTimeoutError("Timeout reading from Redis"))

    def _end(self, exc: Exception) -> None:
        if self.lost is None:
            self.lost = exc
        while self.waiting:
            future = self.waiting.popleft().future
            if not future.done():
                future.set_exception(self.lost)
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        self.transport.abort()

    # -- the connection's end ----------------------------------------------------
    def connection_lost(self, exc: Exception | None) -> None:
        why = f"Connection to Redis lost: {exc}" if exc else "Connection closed by server."
        self._end(RedisConnectionError(why))
        self.replaced.connection_lost(exc)

    def eof_received(self) -> bool:
        return False  # closes the transport: connection_lost follows

    def pause_writing(self) -> None:
        self.replaced.pause_writing()

    def resume_writing(self) -> None:
        self.replaced.resume_writing()


class Wire:
    """A pipelined connection of `redis`'s pool, for commands that do not block
    (a blocking one, XREADGROUP BLOCK, needs a `Wire` of its own)."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._conn: AbstractConnection | None = None
        self._replies: _Replies | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening: asyncio.Future[_Replies] | None = None

    async def call(self, *args: Any) -> Any:
        """One command's reply; an error reply is raised."""
        (reply,) = await self._send(_pack(args), 1)
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def many(self, commands: Sequence[Command]) -> list[Any]:
        """The replies of `commands`, sent in one write; an error reply is returned in
        its command's place (as a pipeline's `raise_on_error=False`)."""
        if not commands:
            return []
        return await self._send(b"".join(_pack(c) for c in commands), len(commands))

    async def _send(self, packed: bytes, replies: int) -> list[Any]:
        connection = self._replies
        if connection is None or connection.lost is not None or (
            self._loop is not asyncio.get_running_loop()
        ):  # fmt: skip
            connection = await self._connection()
        result: list[Any] = await connection.send(packed, replies)
        return result

    async def _connection(self) -> _Replies:
        loop = asyncio.get_running_loop()
        if self._opening is not None and self._loop is loop:
            return await asyncio.shield(self._opening)
        self._opening = loop.create_future()
        try:
            await self._drop()
            self._loop = loop
            pool: Any = self.redis.connection_pool
            conn = await pool.get_connection()
            try:
                transport = conn._writer.transport
                replies = _Replies(transport, transport.get_protocol(), conn.socket_timeout)
                transport.set_protocol(replies)
            except BaseException:
                await self.redis.connection_pool.release(conn)
                raise
            self._conn, self._replies = conn, replies
            self._opening.set_result(replies)
            return replies
        except BaseException as exc:
            self._opening.set_exception(exc)
            self._opening.exception()  # retrieved: the callers waiting get it raised
            raise
        finally:
            self._opening = None

    async def _drop(self) -> None:
        """Give back a connection that ended (or belongs to a loop that ended)."""
        conn, self._conn, self._replies = self._conn, None, None
        if conn is None:
            return
        with suppress(Exception):  # gone with its loop already: nothing to close
            await conn.disconnect(nowait=True)
        with suppress(KeyError, ValueError):  # the pool was reset meanwhile
            await self.redis.connection_pool.release(conn)

    async def aclose(self) -> None:
        await self._drop()


def _pack(args: Command) -> bytes:
    try:
        packed: bytes = hiredis.pack_command(tuple(args))
    except TypeError as exc:
        raise DataError(str(exc)) from None
    return packed
