"""Time partitions through the real record path on a real Redis: hourly inputs complete
a daily contract only with every hour of the day, DST days included, and `offset: -1`
reads the previous partition."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import yaml
from redis.asyncio import Redis

from broker.contracts.model import Contract
from broker.core.events import Event
from broker.core.partitions import Calendar, Granularity
from broker.matching.matcher import Matcher
from broker.state.keys import Keys
from broker.state.redis_store import RedisStore

HOURLY_INTO_DAILY = """
name: daily_from_hours
partitioned: daily
timezone: Europe/Berlin
when: {dataset: events.clicks, partitioned: hourly}
trigger: {target: hook}
"""
PREVIOUS_DAY = """
name: with_yesterday
partitioned: daily
when: {all_of: [warehouse.orders, {dataset: warehouse.customers, offset: -1}]}
trigger: {target: hook}
"""


class Recorder:
    def __init__(self, store: RedisStore, text: str) -> None:
        self.store = store
        self.matcher = Matcher([Contract.parse(yaml.safe_load(text))])
        self.n = 0

    async def send(self, dataset: str, partition: str) -> list[str]:
        """Record one event; the trigger ids it fired."""
        self.n += 1
        event = Event(dataset=dataset, partition=partition, event_id=f"e{self.n}",
                      occurred_at=datetime(2026, 1, 1, tzinfo=UTC))  # fmt: skip
        plan = self.matcher.plan(event, datetime.now(UTC), f"{self.n}-0")
        assert not plan.skipped, plan.skipped
        outcomes = await self.store.record(plan.ops, "v1", ack=[])
        return [o.trigger_id for o in outcomes if o.outcome == "fired" and o.trigger_id]


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStore]:
    client = Redis.from_url(redis_url)
    yield RedisStore(client, Keys("time"), max_backlog=10**9, dedup_ttl_s=60)
    await client.aclose()


def hours_of(day: str) -> list[str]:
    daily = Calendar(Granularity.DAILY, "Europe/Berlin").parse(day)
    assert daily.start is not None and daily.end is not None
    return Calendar(Granularity.HOURLY, "Europe/Berlin").keys_between(daily.start, daily.end)


@pytest.mark.parametrize(("day", "hours"), [("2026-11-23", 24), ("2026-03-29", 23),
                                            ("2026-10-25", 25)])  # fmt: skip
async def test_a_daily_contract_fires_only_with_every_hour_of_its_day(
    store: RedisStore, day: str, hours: int
) -> None:
    recorder = Recorder(store, HOURLY_INTO_DAILY)
    keys = hours_of(day)
    assert len(keys) == hours
    for key in keys[:-1]:
        assert await recorder.send("events.clicks", key) == []
    assert await recorder.send("events.clicks", keys[-1]) == [f"baton:daily_from_hours:{day}:0"]


async def test_the_repeated_hour_of_a_fall_back_day_counts_twice(store: RedisStore) -> None:
    recorder = Recorder(store, HOURLY_INTO_DAILY)
    keys = hours_of("2026-10-25")
    assert "2026-10-25T02" in keys and "2026-10-25T02+01:00" in keys
    for key in keys:
        if key != "2026-10-25T02+01:00":
            assert await recorder.send("events.clicks", key) == []
    fired = await recorder.send("events.clicks", "2026-10-25T02+01:00")
    assert fired == ["baton:daily_from_hours:2026-10-25:0"]


async def test_offset_minus_one_reads_the_previous_day(store: RedisStore) -> None:
    recorder = Recorder(store, PREVIOUS_DAY)
    assert await recorder.send("warehouse.customers", "2026-11-23") == []  # feeds the 24th
    assert await recorder.send("warehouse.orders", "2026-11-23") == []
    assert await recorder.send("warehouse.customers", "2026-11-22") == [
        "baton:with_yesterday:2026-11-23:0"
    ]
    assert await recorder.send("warehouse.orders", "2026-11-24") == [
        "baton:with_yesterday:2026-11-24:0"
    ]
