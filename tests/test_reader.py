"""The worker's stream reader on a real Redis: batches handed on and left pending until
acked, a failing batch left for the reclaim loop while later ones go on, a deleted
group made again at the start of the stream, and a Redis that goes away and comes
back reported in one line."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

import pytest
from redis.asyncio import Redis

from broker.embedded_redis import RedisProcess
from broker.state.health import RedisHealth, reconnecting
from broker.state.ports import StreamEntry
from broker.state.reader import StreamReader

STREAM, GROUP = "s", "g"


async def until(predicate: Callable[[], bool], what: str, timeout: float = 30) -> None:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"waited {timeout}s for {what}"
        await asyncio.sleep(0.01)


class Handler:
    """Acks what it is handed, but fails on (and leaves pending) any batch holding
    an entry whose `n` is in `fail`."""

    def __init__(self, redis: Redis, fail: frozenset[str] = frozenset()) -> None:
        self.redis = redis
        self.fail = fail
        self.seen: list[str] = []

    async def __call__(self, entries: Sequence[StreamEntry]) -> None:
        values = [fields["n"] for _, fields in entries]
        self.seen += values
        if self.fail & set(values):
            raise ValueError("this batch breaks its handler")
        await self.redis.xack(STREAM, GROUP, *(entry_id for entry_id, _ in entries))


async def reading(redis: Redis, handler: Handler, count: int = 100) -> tuple[
    StreamReader, asyncio.Event, asyncio.Task[None]
]:  # fmt: skip
    health = RedisHealth(redis, logging.getLogger("baton.test"), "it waits")
    reader = StreamReader(redis, STREAM, GROUP, "me", count, handler, health)
    stop = asyncio.Event()
    return reader, stop, asyncio.create_task(reader.run(stop))


async def test_a_failing_batch_stays_pending_and_the_next_ones_are_handled(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    redis = Redis.from_url(redis_url)
    await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    handler = Handler(redis, fail=frozenset({"2"}))
    _, stop, task = await reading(redis, handler, count=1)
    for n in range(5):
        await redis.xadd(STREAM, {"n": str(n)})
    await until(lambda: len(handler.seen) == 5, "five entries handed on")
    assert handler.seen == ["0", "1", "2", "3", "4"]
    pending = await redis.xpending(STREAM, GROUP)
    assert pending["pending"] == 1  # the one that failed, for the reclaim loop
    assert "a batch of 1 entries of s failed" in caplog.text
    stop.set()
    await until(task.done, "the reader to stop after its read")
    assert task.exception() is None
    await redis.aclose()


async def test_a_deleted_group_is_made_again_and_nothing_added_after_is_missed(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    redis = Redis.from_url(redis_url)
    await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    handler = Handler(redis)
    _, stop, task = await reading(redis, handler)
    await redis.xadd(STREAM, {"n": "before"})
    await until(lambda: handler.seen == ["before"], "the first entry")
    await redis.delete(STREAM)  # group and all: as a FLUSHALL or a stray DEL would
    await redis.xadd(STREAM, {"n": "after"})
    await until(lambda: "after" in handler.seen, "the entry added after the group went")
    assert handler.seen == ["before", "after"]
    assert "was gone" in caplog.text
    stop.set()
    await until(task.done, "the reader to stop")
    await redis.aclose()


async def test_a_redis_that_goes_away_is_one_line_and_reading_goes_on_when_it_is_back(
    redis_server: RedisProcess, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    redis = Redis.from_url(redis_url, retry=reconnecting(), socket_timeout=5)
    await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    handler = Handler(redis)
    reader, stop, task = await reading(redis, handler)
    await redis.xadd(STREAM, {"n": "1"})
    await until(lambda: handler.seen == ["1"], "the first entry")
    redis_server.stop()  # saves, so the stream and its group survive the restart
    await until(lambda: "Redis is unreachable" in caplog.text, "the outage to be noticed")
    await asyncio.sleep(2.5)  # two more failed reads, each one would log if it could
    redis_server.start()
    await redis.xadd(STREAM, {"n": "2"})
    await until(lambda: handler.seen == ["1", "2"], "the entry added after Redis came back")
    assert caplog.text.count("Redis is unreachable") == 1
    assert "Traceback" not in caplog.text
    stop.set()
    await until(task.done, "the reader to stop")
    reader.health.close()
    await redis.aclose()
