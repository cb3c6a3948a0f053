"""The hot paths' pipelined connection (broker.state.wire) on a real Redis: replies in
order under concurrency, errors as redis-py's, a Redis that restarts or hangs, a caller
that gives up, and the client's `aclose()` closing it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from broker.embedded_redis import RedisProcess
from broker.state.health import is_down
from broker.state.wire import Wire


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    made = Redis.from_url(redis_url, socket_timeout=10)
    yield made
    await made.aclose()


async def test_concurrent_callers_each_get_their_own_reply_in_order(client: Redis) -> None:
    wire = Wire(client)
    replies = await asyncio.gather(*(wire.call("INCR", "n") for _ in range(300)))
    assert replies == list(range(1, 301))
    batches = await asyncio.gather(
        *(wire.many([("INCRBY", "m", i), ("GET", "m")]) for i in range(1, 51))
    )
    total = 0
    for i, (added, read) in enumerate(batches, start=1):
        total += i
        assert added == total and read == str(total).encode()


async def test_errors_are_redis_pys_raised_by_call_and_in_place_in_many(client: Redis) -> None:
    wire = Wire(client)
    with pytest.raises(NoScriptError):
        await wire.call("EVALSHA", "0" * 40, 0)
    await client.rpush("a-list", "x")
    ok, wrong, after = await wire.many([("SET", "k", 1), ("INCR", "a-list"), ("GET", "k")])
    assert ok == b"OK" and after == b"1"
    assert isinstance(wrong, ResponseError) and "WRONGTYPE" in str(wrong)
    with pytest.raises(DataError):
        await wire.call("SET", "k", None)
    assert await wire.call("GET", "k") == b"1"  # a refused command sent nothing
    # a Lua false is a reply like any other (RESP3 has booleans), not "more to come"
    assert await wire.call("EVAL", "return false", 0) in (False, None)
    assert await wire.many([]) == []


async def test_a_caller_that_gives_up_leaves_the_replies_in_step(client: Redis) -> None:
    wire = Wire(client)
    slow = asyncio.ensure_future(wire.call("DEBUG", "SLEEP", "0.3"))
    await asyncio.sleep(0.05)
    slow.cancel()
    # were the sleep's +OK handed on, INCR would get it
    assert await wire.call("INCR", "after") == 1
    assert await wire.call("GET", "after") == b"1"


async def test_a_redis_restarted_between_commands_costs_nothing(
    redis_server: RedisProcess, redis_url: str
) -> None:
    client = Redis.from_url(redis_url)
    wire = Wire(client)
    assert await wire.call("SET", "k", "v") == b"OK"
    redis_server.stop()
    redis_server.start()
    # the connection the restart ended is noticed before the next command is sent
    await _until_lost(wire)
    assert await wire.call("PING") == b"PONG"
    await client.aclose()


async def test_a_command_in_flight_when_redis_dies_fails_as_down(
    redis_server: RedisProcess, redis_url: str
) -> None:
    client = Redis.from_url(redis_url)
    await client.xgroup_create("s", "g", id="0", mkstream=True)
    wire = Wire(client)
    blocked = asyncio.ensure_future(
        wire.call("XREADGROUP", "GROUP", "g", "c", "BLOCK", 5000, "STREAMS", "s", ">")
    )
    await asyncio.sleep(0.1)
    redis_server.kill()
    with pytest.raises(RedisConnectionError) as lost:
        await asyncio.wait_for(blocked, timeout=30)
    assert is_down(lost.value)
    with pytest.raises(RedisConnectionError):  # and no connection is to be had meanwhile
        await wire.call("PING")
    redis_server.start()
    assert await wire.call("PING") == b"PONG"
    await client.aclose()


async def test_a_reply_overdue_past_the_socket_timeout_is_a_timeout(redis_url: str) -> None:
    client = Redis.from_url(redis_url, socket_timeout=0.2)
    wire = Wire(client)
    with pytest.raises(RedisTimeoutError) as late:
        await wire.call("DEBUG", "SLEEP", "0.6")
    assert is_down(late.value)
    await asyncio.sleep(0.6)  # what the slept command answers later goes nowhere
    assert await wire.call("PING") == b"PONG"  # on a new connection
    await client.aclose()


async def test_the_clients_aclose_closes_the_wires_connection(redis_url: str) -> None:
    watcher = Redis.from_url(redis_url)

    async def named() -> list[str]:
        return [c["name"] for c in await watcher.client_list() if c["name"] == "the-wire"]

    client = Redis.from_url(redis_url)
    wire = Wire(client)
    await wire.call("CLIENT", "SETNAME", "the-wire")
    assert await named() == ["the-wire"]
    await client.aclose()
    for _ in range(100):  # Redis notes a closed connection on its next event-loop turn
        if not await named():
            break
        await asyncio.sleep(0.05)
    assert await named() == [], "Redis still lists the wire's connection 5 s after aclose()"
    await watcher.aclose()


async def _until_lost(wire: Wire) -> None:
    for _ in range(200):
        replies = wire._replies
        if replies is None or replies.lost is not None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the wire did not notice, within 2 s, that Redis restarted")
