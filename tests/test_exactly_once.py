"""The core guarantee, on a real Redis: any order and any duplication of a set of events
gives the same set of triggers, each exactly once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from itertools import count

import redis
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from broker.contracts.model import Contract
from broker.core.events import Event
from broker.matching.matcher import Matcher
from broker.state.keys import Keys
from broker.state.redis_store import RedisStore

DAYS = ["2026-11-22", "2026-11-23", "2026-11-24"]
DATASETS = ["a", "b", "c"]


def contract(policy: str) -> Contract:
    return Contract.parse(
        yaml.safe_load(
            f"""
            name: report
            partitioned: daily
            on_restatement: {policy}
            when:
              all_of:
                - a
                - any_of: [b, c]
            trigger: {{target: hook}}
            """
        )
    )


def expected(events: list[Event]) -> set[str]:
    """Days where a and (b or c) arrived: one trigger each, generation 0."""
    have = {(e.dataset, e.partition) for e in events}
    return {
        f"baton:report:{day}:0"
        for day in DAYS
        if ("a", day) in have and (("b", day) in have or ("c", day) in have)
    }


async def replay(url: str, matcher: Matcher, events: list[Event]) -> list[str]:
    client = Redis.from_url(url)
    store = RedisStore(client, Keys("prop"), max_backlog=10**9, dedup_ttl_s=60)
    now = datetime(2026, 11, 25, tzinfo=UTC)
    ids = count(1)
    fired: list[str] = []
    for event in events:
        plan = matcher.plan(event, now, f"{next(ids)}-0")
        for outcome in await store.record(plan.ops, "v1"):
            if outcome.trigger_id:
                fired.append(outcome.trigger_id)
    await client.aclose()
    return fired


@st.composite
def distinct_events(draw: st.DrawFn, per_slot: int) -> list[Event]:
    slots = draw(st.sets(st.tuples(st.sampled_from(DATASETS), st.sampled_from(DAYS)), min_size=1))
    base = datetime(2026, 11, 24, tzinfo=UTC)
    events = []
    for n, (dataset, day) in enumerate(sorted(slots)):
        for version in range(draw(st.integers(1, per_slot))):
            events.append(
                Event(
                    dataset=dataset,
                    partition=day,
                    event_id=f"{dataset}/{day}/{version}",
                    occurred_at=base + timedelta(minutes=n * 10 + version),
                )
            )
    return events


def arrivals(events: list[Event]) -> st.SearchStrategy[list[Event]]:
    """Every event at least once, some twice or three times, in any order."""
    repeats = st.lists(st.sampled_from(events), max_size=len(events) * 2)
    return repeats.flatmap(lambda extra: st.permutations(events + extra))


def _flush(url: str) -> None:
    client = redis.Redis.from_url(url)
    client.flushall()
    client.close()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_order_and_duplication_gives_the_same_triggers_once_each(
    redis_url: str, data: st.DataObject
) -> None:
    events = data.draw(distinct_events(per_slot=1))
    order = data.draw(arrivals(events))
    _flush(redis_url)
    fired = asyncio.run(replay(redis_url, Matcher([contract("retrigger")]), order))
    assert len(fired) == len(set(fired)), f"a trigger fired twice: {fired}"
    assert set(fired) == expected(events)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_with_restatements_ignored_several_events_per_input_still_fire_once(
    redis_url: str, data: st.DataObject
) -> None:
    events = data.draw(distinct_events(per_slot=3))
    order = data.draw(arrivals(events))
    _flush(redis_url)
    fired = asyncio.run(replay(redis_url, Matcher([contract("ignore")]), order))
    assert sorted(fired) == sorted(expected(events))


async def replay_expiring(
    url: str, matcher: Matcher, events: list[Event], expire_after: set[int]
) -> list[str]:
    """As `replay`, but after each event whose index is in `expire_after`, every
    partition hash and trigger record is gone, as if its history window had passed."""
    client = Redis.from_url(url)
    store = RedisStore(client, Keys("prop"), max_backlog=10**9, dedup_ttl_s=60,
                       history_s=3600, markers_s=86400)  # fmt: skip
    now = datetime(2026, 11, 25, tzinfo=UTC)
    fired: list[str] = []
    for n, event in enumerate(events):
        plan = matcher.plan(event, now, f"{n + 1}-0")
        for outcome in await store.record(plan.ops, "v1"):
            if outcome.trigger_id:
                fired.append(outcome.trigger_id)
        if n in expire_after:
            gone = [k async for k in client.scan_iter("prop:[pt]:*")]
            if gone:
                await client.delete(*gone)
    await client.aclose()
    return fired


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), policy=st.sampled_from(["retrigger", "ignore"]))
def test_state_that_expires_at_any_point_never_fires_a_trigger_id_twice(
    redis_url: str, data: st.DataObject, policy: str
) -> None:
    events = data.draw(distinct_events(per_slot=2))
    order = data.draw(arrivals(events))
    expire_after = data.draw(st.sets(st.integers(0, len(order) - 1)))
    _flush(redis_url)
    fired = asyncio.run(replay_expiring(redis_url, Matcher([contract(policy)]), order,
                                        expire_after))  # fmt: skip
    assert len(fired) == len(set(fired)), f"a trigger id fired twice: {fired}"
    # Every day whose inputs all came before any expiry fired generation 0.
    first = min(expire_after, default=len(order))
    assert expected(order[: first + 1]) <= set(fired)
    if policy == "ignore":  # ignored restatements: at most one trigger per day, ever
        assert len(fired) == len({f.rsplit(":", 1)[0] for f in fired})


def test_a_restated_input_starts_the_next_generation_once(redis_url: str) -> None:
    day = "2026-11-23"
    t0 = datetime(2026, 11, 24, tzinfo=UTC)
    first = [
        Event(dataset="a", partition=day, event_id="a1", occurred_at=t0),
        Event(dataset="b", partition=day, event_id="b1", occurred_at=t0),
    ]
    restated = Event(dataset="a", partition=day, event_id="a2", occurred_at=t0 + timedelta(hours=1))
    late_old = Event(dataset="a", partition=day, event_id="a0", occurred_at=t0 - timedelta(hours=1))
    order = [*first, restated, restated, late_old, first[0]]
    fired = asyncio.run(replay(redis_url, Matcher([contract("retrigger")]), order))
    assert fired == [f"baton:report:{day}:0", f"baton:report:{day}:1"]


def test_a_failed_event_never_satisfies(redis_url: str) -> None:
    day = "2026-11-23"
    order = [
        Event(dataset="a", partition=day, event_id="a1", status="failed"),
        Event(dataset="b", partition=day, event_id="b1"),
    ]
    for event in order:
        assert event.occurred_at is None
    stamped = [e.completed(datetime(2026, 11, 24, tzinfo=UTC)) for e in order]
    assert asyncio.run(replay(redis_url, Matcher([contract("retrigger")]), stamped)) == []


def test_unpartitioned_fires_when_every_input_has_a_new_event_since_the_last_trigger(
    redis_url: str,
) -> None:
    unpartitioned = Contract.parse(
        {"name": "refresh", "when": {"all_of": ["a", "b"]}, "trigger": {"target": "hook"}}
    )
    t0 = datetime(2026, 11, 24, tzinfo=UTC)

    def ev(dataset: str, n: int) -> Event:
        return Event(
            dataset=dataset, event_id=f"{dataset}{n}", occurred_at=t0 + timedelta(minutes=n)
        )

    order = [ev("a", 1), ev("b", 2), ev("a", 3), ev("a", 4), ev("b", 5), ev("b", 5)]
    fired = asyncio.run(replay(redis_url, Matcher([unpartitioned]), order))
    assert fired == ["baton:refresh:_:0", "baton:refresh:_:1"]


def test_recording_survives_a_flushed_script_cache(redis_url: str) -> None:
    """A Redis restarted (or SCRIPT FLUSHed) under a running worker forgets the scripts;
    the next record loads them again and fires as it would have."""
    day = "2026-11-23"
    t0 = datetime(2026, 11, 24, tzinfo=UTC)
    a, b = (Event(dataset=d, partition=day, event_id=f"{d}1", occurred_at=t0) for d in "ab")
    _flush(redis_url)
    matcher = Matcher([contract("retrigger")])
    assert asyncio.run(replay(redis_url, matcher, [a])) == []
    client = redis.Redis.from_url(redis_url)
    client.script_flush()
    client.close()
    assert asyncio.run(replay(redis_url, matcher, [b])) == [f"baton:report:{day}:0"]
