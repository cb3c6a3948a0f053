"""`within`: every input must land inside the window; one that landed longer ago no
longer counts (real Redis, the real record script), and explain says so."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from redis.asyncio import Redis

from broker.contracts.model import Contract
from broker.control.explain import explain
from broker.core.events import Event
from broker.matching.matcher import Matcher
from broker.state.keys import Keys
from broker.state.redis_store import RedisStore

CONTRACT = Contract.parse(yaml.safe_load("""
    name: report
    partitioned: daily
    within: 6h
    when: {all_of: [orders, fx]}
    trigger: {target: hook}
"""))  # fmt: skip
T0 = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
DAY = "2026-11-23"


class Inputs:
    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self.matcher = Matcher([CONTRACT])
        self.n = 0

    async def land(self, dataset: str, at: datetime) -> str:
        """`dataset` lands at `at`; returns what recording it did."""
        self.n += 1
        event = Event(dataset=dataset, partition=DAY, event_id=f"e{self.n}", occurred_at=at)
        plan = self.matcher.plan(event, at, f"{int(at.timestamp() * 1000)}-{self.n}")
        [outcome] = await self.store.record(plan.ops, "v1", ack=[])
        return outcome.outcome


@pytest.fixture
async def inputs(redis_url: str) -> AsyncIterator[Inputs]:
    client = Redis.from_url(redis_url)
    yield Inputs(RedisStore(client, Keys("within"), max_backlog=10**9, dedup_ttl_s=60))
    await client.aclose()


async def test_inputs_inside_the_window_fire(inputs: Inputs) -> None:
    assert await inputs.land("orders", T0) == "recorded"
    assert await inputs.land("fx", T0 + timedelta(hours=5, minutes=59)) == "fired"


async def test_an_input_that_landed_too_long_ago_no_longer_counts(inputs: Inputs) -> None:
    assert await inputs.land("orders", T0) == "recorded"
    assert await inputs.land("fx", T0 + timedelta(hours=7)) == "recorded"  # orders too old
    state = await inputs.store.read_partition("report", DAY)
    report = explain(CONTRACT, DAY, state, None, now=T0 + timedelta(hours=7))
    assert {i.dataset: i.state for i in report.inputs} == {"orders": "expired", "fx": "satisfied"}
    assert not report.condition_holds and report.missing == ["orders[2026-11-23]"]
    # orders lands again, inside the window of fx: now it fires
    assert await inputs.land("orders", T0 + timedelta(hours=8)) == "fired"


async def test_explain_counts_a_fired_partition_as_it_fired(inputs: Inputs) -> None:
    await inputs.land("orders", T0)
    await inputs.land("fx", T0 + timedelta(hours=1))
    state = await inputs.store.read_partition("report", DAY)
    report = explain(CONTRACT, DAY, state, None, now=T0 + timedelta(days=3))
    assert [i.state for i in report.inputs] == ["satisfied", "satisfied"]
