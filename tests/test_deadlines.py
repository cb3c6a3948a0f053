"""Deadlines: the arithmetic, the clock on a real Redis (two clocks, restarts), and the
whole path through real workers to a real alert sink."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import yaml
from redis.asyncio import Redis

from broker.contracts.model import Contract
from broker.core.events import Event
from broker.matching.matcher import Matcher
from broker.state.keys import Keys
from broker.state.redis_store import RedisStore
from broker.state.util import text
from broker.time import deadlines
from broker.time.deadlines import DeadlineClock, deadline_at
from tests.conftest import Cluster, wait_until


def contract(deadline: str, partitioned: str = "daily", tz: str = "UTC") -> Contract:
    return Contract.parse(yaml.safe_load(f"""
        name: report
        partitioned: {partitioned}
        timezone: {tz}
        deadline: "{deadline}"
        when: {{all_of: [orders, fx]}}
        trigger: {{target: hook}}
    """))  # fmt: skip


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@pytest.mark.parametrize(
    ("spec", "partitioned", "tz", "partition", "expected"),
    [
        ("+7h30m", "daily", "UTC", "2026-11-23", "2026-11-24T07:30:00+00:00"),
        ("09:00", "daily", "UTC", "2026-11-23", "2026-11-24T09:00:00+00:00"),
        ("+1d09:00", "daily", "UTC", "2026-11-23", "2026-11-25T09:00:00+00:00"),
        # Berlin leaves summer time on 2026-10-25 (a 25-hour day): local wall times hold
        ("09:00", "daily", "Europe/Berlin", "2026-10-24", "2026-10-25T09:00:00+01:00"),
        ("09:00", "daily", "Europe/Berlin", "2026-10-25", "2026-10-26T09:00:00+01:00"),
        ("+2h", "daily", "Europe/Berlin", "2026-03-29", "2026-03-30T02:00:00+02:00"),
        # a time of day before the partition's end is the next day's
        ("09:00", "hourly", "UTC", "2026-11-23T10", "2026-11-24T09:00:00+00:00"),
        ("+30m", "hourly", "UTC", "2026-11-23T10", "2026-11-23T11:30:00+00:00"),
        ("+6h", "weekly", "UTC", "2026-W48", "2026-11-30T06:00:00+00:00"),
        ("+1d", "monthly", "UTC", "2026-11", "2026-12-02T00:00:00+00:00"),
    ],
)
def test_a_deadline_counts_from_the_partition_end_in_local_time(
    spec: str, partitioned: str, tz: str, partition: str, expected: str
) -> None:
    assert deadline_at(contract(spec, partitioned, tz), partition) == utc(expected)


def test_no_deadline_and_no_time_partitions_mean_no_deadline() -> None:
    plain = Contract.parse(
        {"name": "x", "partitioned": "daily", "when": "a", "trigger": {"target": "hook"}}
    )
    assert deadline_at(plain, "2026-11-23") is None
    static = contract("+1h", partitioned="static")
    assert deadline_at(static, "eu") is None


# -- the clock on a real Redis ----------------------------------------------------------


class World:
    """A store, a matcher and clocks over one real Redis, with the time given."""

    def __init__(self, url: str, c: Contract) -> None:
        self.redis = Redis.from_url(url)
        self.store = RedisStore(self.redis, Keys("dl"), max_backlog=10**9, dedup_ttl_s=60)
        self.contracts = {c.name: c}
        self.matcher = Matcher([c])
        self.n = 0

    def clock(self) -> DeadlineClock:
        return DeadlineClock(self.store.deadlines, lambda: self.contracts)

    async def publish(self, clock: DeadlineClock, dataset: str, partition: str) -> str:
        self.n += 1
        event = Event(dataset=dataset, partition=partition, event_id=f"e{self.n}",
                      occurred_at=datetime(2026, 11, 1, tzinfo=UTC))  # fmt: skip
        plan = self.matcher.plan(event, datetime.now(UTC), f"{self.n}-0")
        outcomes = await self.store.record(plan.ops, "v1", ack=[])
        await clock.recorded(plan.ops, outcomes)
        return outcomes[0].outcome

    async def alerts(self) -> list[dict[str, str]]:
        return list(reversed(await self.store.deadlines.alerts()))


@pytest.fixture
async def world(redis_url: str) -> Any:
    w = World(redis_url, contract("+1h"))
    await w.store.ensure_groups()
    yield w
    await w.redis.aclose()


async def test_two_clocks_alert_once_and_a_restart_does_not_alert_again(world: World) -> None:
    first, second = world.clock(), world.clock()
    await first.round(utc("2026-11-23T10:00:00Z"))  # starts watching with 2026-11-23
    await world.publish(first, "orders", "2026-11-23")
    queued = await asyncio.gather(first.round(utc("2026-11-24T00:59:59Z")),
                                  second.round(utc("2026-11-24T00:59:59Z")))  # fmt: skip
    assert queued == [0, 0]  # not yet: the deadline is 01:00
    queued = await asyncio.gather(first.round(utc("2026-11-24T01:00:01Z")),
                                  second.round(utc("2026-11-24T01:00:01Z")))  # fmt: skip
    assert sorted(queued) == [0, 1]
    [alert] = await world.alerts()
    assert alert["kind"] == "deadline_missed"
    assert (alert["contract"], alert["partition"]) == ("report", "2026-11-23")
    assert alert["deadline"] == "2026-11-24T01:00:00+00:00"

    restarted = world.clock()  # a new worker process, same Redis
    await world.publish(restarted, "orders", "2026-11-23")  # an input again: re-watched
    assert await restarted.round(utc("2026-11-24T02:00:00Z")) == 0
    assert len(await world.alerts()) == 1


async def test_deadlines_that_passed_while_down_alert_on_start(world: World) -> None:
    await world.clock().round(utc("2026-11-23T10:00:00Z"))
    # Baton is down for three days; the next worker to start catches up
    assert await world.clock().round(utc("2026-11-26T12:00:00Z")) == 3
    alerts = await world.alerts()
    assert [a["partition"] for a in alerts] == ["2026-11-23", "2026-11-24", "2026-11-25"]
    # the open partition (2026-11-26) is watched, its deadline still ahead
    assert await world.clock().round(utc("2026-11-27T00:30:00Z")) == 0


async def test_a_partition_that_fires_in_time_never_alerts(world: World) -> None:
    clock = world.clock()
    await clock.round(utc("2026-11-23T10:00:00Z"))
    await world.publish(clock, "orders", "2026-11-23")
    assert await world.publish(clock, "fx", "2026-11-23") == "fired"
    assert await clock.round(utc("2026-11-25T02:00:00Z")) == 1  # 2026-11-24 only
    assert [a["partition"] for a in await world.alerts()] == ["2026-11-24"]


async def test_a_late_firing_sends_one_recovered_note(world: World) -> None:
    clock = world.clock()
    await clock.round(utc("2026-11-23T10:00:00Z"))
    assert await clock.round(utc("2026-11-24T02:00:00Z")) == 1
    await world.publish(clock, "orders", "2026-11-23")
    await world.publish(clock, "fx", "2026-11-23")
    await world.publish(clock, "fx", "2026-11-23")  # a restatement fires again: no new note
    kinds = [(a["kind"], a.get("trigger_id")) for a in await world.alerts()]
    assert kinds == [("deadline_missed", None),
                     ("deadline_recovered", "baton:report:2026-11-23:0")]  # fmt: skip
    alert = await world.store.deadlines.alert_of("report", "2026-11-23")
    assert alert is not None and alert["trigger_id"] == "baton:report:2026-11-23:0"


async def test_a_later_deadline_after_a_contract_change_waits(world: World) -> None:
    clock = world.clock()
    await clock.round(utc("2026-11-23T10:00:00Z"))
    world.contracts = {"report": contract("+5h")}  # the set was reloaded
    assert await clock.round(utc("2026-11-24T02:00:00Z")) == 0  # was due at 01:00
    assert await clock.round(utc("2026-11-24T05:00:01Z")) == 1


async def test_a_swapped_set_puts_its_new_contracts_on_the_clock_and_drops_the_removed(
    world: World,
) -> None:
    """A swap looks at the contracts new to the set (an unchanged file loads to the same
    object, whose cursor stands), and the day after, every contract moves on."""
    report, keys = world.contracts["report"], world.store.keys
    added = replace(contract("+1h"), name="added")
    clock = world.clock()
    await clock.round(utc("2026-11-23T10:00:00Z"))
    world.contracts = {"report": report, "added": added}
    await clock.round(utc("2026-11-23T10:05:00Z"))
    on_clock = {text(m) for m in await world.redis.zrange(keys.deadlines, 0, -1)}
    assert on_clock == {"report|2026-11-23", "added|2026-11-23"}
    await clock.round(utc("2026-11-24T00:30:00Z"))
    cursors = await world.redis.hgetall(keys.deadline_cursor)
    assert cursors == {b"report": b"2026-11-24", b"added": b"2026-11-24"}
    world.contracts = {"added": added}  # report removed: off the clock, no alert
    assert await clock.round(utc("2026-11-24T02:00:00Z")) == 1
    assert [(a["contract"], a["partition"]) for a in await world.alerts()] == [
        ("added", "2026-11-23")
    ]
    assert "report" not in clock.watched()


# -- the whole path ----------------------------------------------------------------------

LATE = """
name: revenue
partitioned: daily
deadline: "+1h"
when: {all_of: [warehouse.orders, warehouse.fx]}
trigger: {target: hook}
"""


def alerts_received(sink: Any) -> list[dict[str, Any]]:
    return [d["body"] for d in sink.deliveries() if d["path"] == "/alerts"]


def test_an_input_for_a_partition_past_its_deadline_alerts_once_then_recovers(
    cluster: Cluster,
) -> None:
    sink = cluster.sink()
    cluster.write_contracts({"late.yaml": LATE})
    cluster.write_config(
        sink.url, alerts=[{"kind": "webhook", "url": sink.url + "/alerts", "secret": "s3cret"}]
    )
    cluster.run()
    cluster.start("worker", name="second-worker")  # two clocks: still one alert
    cluster.cli("publish", "warehouse.orders", "--partition", "2026-11-20", "--event-id", "o1")

    [missed] = wait_until(lambda: alerts_received(sink))
    assert missed["baton"]["kind"] == "deadline_missed"
    assert missed["baton"]["deadline"] == "2026-11-21T01:00:00+00:00"
    assert [m["dataset"] for m in missed["baton"]["missing"]] == ["warehouse.fx"]
    assert "missed its deadline" in missed["text"] and "warehouse.fx" in missed["text"]
    listed = httpx.get(cluster.api + "/v1/alerts").json()["alerts"]
    assert [a["kind"] for a in listed] == ["deadline_missed"]
    explained = json.loads(cluster.cli("explain", "revenue", "2026-11-20", "--json").stdout)
    assert explained["deadline"] == "2026-11-21T01:00:00+00:00"
    assert explained["deadline_alert"]["deadline"] == "2026-11-21T01:00:00+00:00"

    cluster.cli("publish", "warehouse.fx", "--partition", "2026-11-20", "--event-id", "f1")
    got = wait_until(lambda: len(alerts_received(sink)) == 2 and alerts_received(sink))
    assert got[1]["baton"]["kind"] == "deadline_recovered"
    assert got[1]["baton"]["trigger_id"] == "baton:revenue:2026-11-20:0"
    assert "recovered" in cluster.cli("explain", "revenue", "2026-11-20").stdout

    for proc in [p for p in cluster.procs if p is not sink.proc]:  # Baton stops, starts again
        proc.stop()
        cluster.procs.remove(proc)
    cluster.run()
    cluster.cli("publish", "warehouse.orders", "--partition", "2026-11-20", "--event-id", "o2")
    wait_until(lambda: len(json.loads(cluster.cli("triggers", "--json").stdout)) == 2)
    assert len(alerts_received(sink)) == 2  # no second alert for the same partition


def test_check_refuses_a_deadline_without_time_partitions(cluster: Cluster) -> None:
    text = "name: x\npartitioned: static\ndeadline: '+1h'\nwhen: a\ntrigger: {target: hook}\n"
    folder = cluster.write_contracts({"x.yaml": text})
    cluster.write_config("http://127.0.0.1:9")
    result = cluster.cli("check", str(folder), check=False)
    assert result.returncode == 1
    assert "x.yaml:3: deadline: counts from a partition's end" in result.stderr


FORCED = """
name: revenue_anyway
partitioned: daily
deadline: "+1h"
on_deadline: trigger
when: {all_of: [warehouse.orders, warehouse.fx]}
trigger:
  target: hook
  body: {missing: "{{ missing }}", orders: "{{ inputs['warehouse.orders'].event_id }}"}
"""


def test_on_deadline_trigger_runs_anyway_naming_what_is_missing(cluster: Cluster) -> None:
    sink = cluster.sink()
    cluster.write_contracts({"forced.yaml": FORCED})
    cluster.write_config(
        sink.url, alerts=[{"kind": "webhook", "url": sink.url + "/alerts", "secret": "s3cret"}]
    )
    cluster.run()
    cluster.cli("publish", "warehouse.orders", "--partition", "2026-11-20", "--event-id", "o1")

    [run] = wait_until(lambda: [d for d in sink.deliveries() if d["path"] == "/hook"])
    assert run["idempotency_key"] == "baton:revenue_anyway:2026-11-20:0"
    assert run["body"] == {"missing": ["warehouse.fx[2026-11-20]"], "orders": "o1"}
    [alert] = wait_until(lambda: alerts_received(sink))
    assert alert["baton"]["kind"] == "deadline_forced"
    assert "Started anyway" in alert["text"] and "warehouse.fx" in alert["text"]

    # the late input is recorded and starts nothing more (a rerun is a backfill's job)
    cluster.cli("publish", "warehouse.fx", "--partition", "2026-11-20", "--event-id", "f1")
    explained = wait_until(
        lambda: (e := json.loads(cluster.cli("explain", "revenue_anyway", "2026-11-20",
                                             "--json").stdout))["condition_holds"] and e
    )  # fmt: skip
    assert explained["trigger"]["id"] == "baton:revenue_anyway:2026-11-20:0"
    assert len([d for d in sink.deliveries() if d["path"] == "/hook"]) == 1
    assert len(alerts_received(sink)) == 1


async def test_an_event_marked_backfill_puts_nothing_on_the_clock(world: World) -> None:
    clock = world.clock()
    await clock.round(utc("2026-11-23T10:00:00Z"))
    world.n += 1
    event = Event(dataset="orders", partition="2026-11-01", event_id="old",
                  metadata={"backfill": True}, occurred_at=utc("2026-11-01T00:00:00Z"))  # fmt: skip
    plan = world.matcher.plan(event, datetime.now(UTC), "1-0")
    await clock.recorded(plan.ops, await world.store.record(plan.ops, "v1", ack=[]))
    assert await world.publish(clock, "orders", "2026-11-02") == "recorded"  # not marked
    assert await clock.round(utc("2026-11-23T10:00:01Z")) == 1
    assert [a["partition"] for a in await world.alerts()] == ["2026-11-02"]


async def test_more_contracts_than_a_chunk_all_go_on_the_clock_and_catch_up(
    world: World,
) -> None:
    n = deadlines.SCHEDULE_CHUNK * 2 + 7  # three chunks, the last a short one
    many = {f"r{i}": replace(contract("+1h"), name=f"r{i}") for i in range(n)}
    world.contracts = many
    clock = world.clock()
    await clock.round(utc("2026-11-23T10:00:00Z"))
    keys = world.store.keys
    assert await world.redis.zcard(keys.deadlines) == n
    assert len(await world.redis.hgetall(keys.deadline_cursor)) == n
    # two days later every contract has its two new partitions watched, the two past
    # deadlines alerted (2026-11-23 and -24; a round decides 100) and the open one ahead
    alerted = 0
    while queued := await clock.round(utc("2026-11-25T12:00:00Z")):
        alerted += queued
    assert alerted == 2 * n
    assert await world.redis.zcard(keys.deadlines) == n
    # one contract goes hourly: its daily cursor no longer parses, it starts afresh
    hourly = replace(contract("+1h", partitioned="hourly"), name="r0")
    world.contracts = {**many, "r0": hourly}
    await world.clock().round(utc("2026-11-25T12:30:00Z"))
    assert await world.redis.hget(keys.deadline_cursor, "r0") == b"2026-11-25T12"
