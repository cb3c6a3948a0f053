"""Calls of one Lua script made in the same turn of the event loop, sent as one pipeline.

Under load many dispatches end together (their targets answer in the same few
milliseconds), and each records its outcome with the finish script. Sent one by one,
each is a round trip with its own connection checkout, write and wake-up; gathered, the
turn's calls share one. Each call still gets its own answer or its own error: one
failing call fails only its caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from broker.state.wire import Wire

Call = tuple[Sequence[Any], Sequence[Any], "asyncio.Future[Any]"]


class ScriptBatch:
    def __init__(self, wire: Wire, script: AsyncScript) -> None:
        self.wire = wire
        self.script = script
        self._waiting: list[Call] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def __call__(self, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._waiting:  # the first call of this turn: send them all at its end
            loop.call_soon(self._send_turn)
        self._waiting.append((keys, args, future))
        return await future

    def _send_turn(self) -> None:
        calls, self._waiting = self._waiting, []
        task = asyncio.get_running_loop().create_task(self._send(calls))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, calls: list[Call]) -> None:
        try:
            replies = await self._execute(calls)
        except BaseException as exc:  # the pipeline as a whole failed: so did each call
            for _, _, future in calls:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, _, future), reply in zip(calls, replies, strict=True):
            if future.done():  # its caller was cancelled meanwhile
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _execute(self, calls: list[Call]) -> list[Any]:
        replies = await self._pipeline(calls)
        again = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if again:  # Redis restarted or flushed its scripts: load it, send those again
            await self.wire.redis.script_load(self.script.script)
            for i, reply in zip(again, await self._pipeline([calls[i] for i in again]),
                                strict=True):  # fmt: skip
                replies[i] = reply
        return replies

    async def _pipeline(self, calls: list[Call]) -> list[Any]:
        sha = self.script.sha
        return await self.wire.many([("EVALSHA", sha, len(keys), *keys, *args)
                                     for keys, args, _ in calls])  # fmt: skip
