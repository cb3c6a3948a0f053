"""ScriptBatch on a real Redis: the calls of one event-loop turn go as one write,
each gets its own answer or its own error, and a flushed script cache is survived."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from broker.core.errors import BacklogFull
from broker.state.batch import ScriptBatch
from broker.state.keys import Keys
from broker.state.streams import RedisStreams
from broker.state.wire import Wire

INCR = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


class Counted:
    """Counts the writes of commands a wire sends together (a spy: the real ones go)."""

    def __init__(self, wire: Wire) -> None:
        self.opened = 0
        self.real = wire.many

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.opened += 1
        return self.real(*args, **kwargs)


async def test_one_turns_calls_are_one_pipeline_each_with_its_own_answer(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis = Redis.from_url(redis_url)
    wire = Wire(redis)
    incr = ScriptBatch(wire, redis.register_script(INCR))
    await redis.script_load(INCR)  # as after a first call: one NOSCRIPT, then loaded
    counted = Counted(wire)
    monkeypatch.setattr(wire, "many", counted)
    answers = await asyncio.gather(*(incr([f"k{i % 3}"], [i]) for i in range(30)))
    assert counted.opened == 1
    # each call's own reply: k0 gets 0, 3, 6, ... in call order
    expected, totals = [], {0: 0, 1: 0, 2: 0}
    for i in range(30):
        totals[i % 3] += i
        expected.append(totals[i % 3])
    assert answers == expected
    # calls in later turns go in later pipelines
    assert await incr(["k0"], [1]) == totals[0] + 1
    assert counted.opened == 2
    await redis.aclose()


async def test_a_failing_call_fails_only_its_caller(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    await redis.rpush("a-list", "x")  # INCRBY on a list: WRONGTYPE
    incr = ScriptBatch(Wire(redis), redis.register_script(INCR))
    good, bad, after = await asyncio.gather(
        incr(["n"], [5]), incr(["a-list"], [1]), incr(["n"], [1]), return_exceptions=True
    )
    assert good == 5 and after == 6
    assert isinstance(bad, ResponseError) and "WRONGTYPE" in str(bad)
    await redis.aclose()


async def test_a_flushed_script_cache_is_loaded_again_and_nothing_runs_twice(
    redis_url: str,
) -> None:
    redis = Redis.from_url(redis_url)
    incr = ScriptBatch(Wire(redis), redis.register_script(INCR))
    assert await incr(["n"], [1]) == 1
    await redis.script_flush()
    assert await asyncio.gather(incr(["n"], [1]), incr(["n"], [1])) == [2, 3]
    assert int(await redis.get("n")) == 3
    await redis.aclose()


async def test_events_appended_in_one_turn_share_a_pipeline_and_dedup_across_calls(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ingest path: HTTP requests that land in one loop turn are one pipeline, and
    an event id sent by two of them is still accepted once."""
    redis = Redis.from_url(redis_url)
    streams = RedisStreams(redis, Keys("batch-ingest"), max_backlog=3, dedup_ttl_s=60)
    await streams.append([("warm", "{}")])  # the script loaded, as after a first call
    counted = Counted(streams.wire)
    monkeypatch.setattr(streams.wire, "many", counted)
    first, again, other = await asyncio.gather(
        streams.append([("e1", "{}")]), streams.append([("e1", "{}")]),
        streams.append([("e2", "{}"), ("e3", "{}")]), return_exceptions=True,
    )  # fmt: skip
    assert counted.opened == 1
    assert isinstance(first, list) and first[0] is not None
    assert again == [None]  # a duplicate, though sent in the same write
    # the backlog held 2 (warm, e1) of 3: the two-event call does not fit, and only it fails
    assert isinstance(other, BacklogFull)
    assert await redis.xlen("batch-ingest:events") == 2
    await redis.aclose()
