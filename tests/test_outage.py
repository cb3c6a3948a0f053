"""Outages outlasted: a target down for a long while costs a probe per cooldown, not
every trigger times every attempt; when it answers again the waiting triggers go out
within seconds, oldest first, each exactly once. And per-target limits hold under a
burst. Real `baton run`, real Redis; the target is a fault-injecting webhook server.

The outage is scaled down (seconds for minutes: a 0.5 s cooldown for the default
5 s, a 10 s outage for 10 minutes); the default policy's own arithmetic is checked on
the real dispatcher with a clock the test moves."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import redis.asyncio as aioredis

from broker.contracts.model import Contract
from broker.core.errors import TargetUnavailable
from broker.core.events import Event
from broker.core.settings import RetrySettings
from broker.dispatch.dispatcher import Dispatcher
from broker.dispatch.gate import Gates
from broker.dispatch.target import Receipt, RunStatus, TriggerRequest
from broker.matching.matcher import Matcher
from broker.state.keys import Keys
from broker.state.redis_store import RedisStore
from tests.conftest import Cluster, wait_until
from tests.flaky_target import FlakyTarget

CONTRACT = """
name: report
partitioned: daily
when: warehouse.orders
trigger: {target: flaky}
"""
DAYS = [(datetime(2026, 9, 1) + timedelta(days=i)).strftime("%Y-%m-%d") for i in range(40)]


@pytest.fixture
def flaky() -> Iterator[FlakyTarget]:
    target = FlakyTarget().start()
    yield target
    target.stop()


def start(cluster: Cluster, flaky: FlakyTarget, **target: object) -> None:
    cluster.write_contracts({"report.yaml": CONTRACT})
    cluster.write_config(
        "http://127.0.0.1:9",
        targets={"flaky": {"kind": "webhook", "url": flaky.url, **target}},
        retry={"initial": "0.2s", "max_delay": "1s", "max_age": "10m"},
        worker={"claim_idle": "5s", "dispatch_concurrency": 1},
    )
    cluster.run()


def publish(cluster: Cluster, days: list[str]) -> None:
    for day in days:  # one at a time: triggers are made in this order
        event = {"dataset": "warehouse.orders", "partition": day, "event_id": f"o/{day}"}
        assert httpx.post(cluster.api + "/v1/events", json=event, timeout=5).status_code == 202


def states(cluster: Cluster) -> dict[str, str]:
    listed = httpx.get(cluster.api + "/v1/triggers?limit=200", timeout=5).json()["triggers"]
    return {t["id"]: t["state"] for t in listed}


def metrics(cluster: Cluster) -> str:
    return httpx.get(cluster.api + "/metrics", timeout=5).text


def test_a_target_down_for_ten_minutes_costs_probes_and_then_gets_every_trigger_once(
    cluster: Cluster, flaky: FlakyTarget
) -> None:
    flaky.down = True
    start(cluster, flaky, breaker={"failures": 3, "cooldown": "0.5s", "max_cooldown": "1s"})
    publish(cluster, DAYS)
    wait_until(lambda: len(states(cluster)) == 40)
    wait_until(lambda: set(states(cluster).values()) == {"waiting"})
    during = len(flaky.calls)
    # A probe takes the oldest out of the waiting set for the moment of its call, so a
    # scrape may find 39; all 40 are there between probes.
    wait_until(
        lambda: 'baton_target_waiting{target="flaky"} 40' in metrics(cluster),
        timeout=30, what="the metrics to count 40 triggers waiting for flaky",
        seen=lambda: [line for line in metrics(cluster).splitlines() if "flaky" in line],
    )  # fmt: skip
    assert 'baton_target_breaker_open{target="flaky"} 1' in metrics(cluster)
    time.sleep(10)  # the outage itself: the scenario is time passing with the target down
    probes = len(flaky.calls) - during
    # About one probe a second (the cooldown doubles to its 1 s cap), not 40 triggers
    # each retried every second: that would be some 400 calls.
    assert during <= 10, during
    assert 5 <= probes <= 15, probes

    flaky.down = False
    up = time.monotonic()
    expected = [f"baton:report:{day}:0" for day in DAYS]
    wait_until(lambda: len(flaky.delivered()) >= 40)
    last = max(c.at for c in flaky.calls if c.status == 200)
    assert last - up < 10, f"took {last - up:.1f} s after the target came back"
    assert flaky.delivered() == expected  # oldest first, each once
    wait_until(lambda: set(states(cluster).values()) == {"succeeded"})
    assert len(flaky.delivered()) == 40
    seen = httpx.get(cluster.api + "/metrics", timeout=5).text
    assert 'baton_target_waiting{target="flaky"} 0' in seen
    assert 'baton_target_breaker_open{target="flaky"} 0' in seen


def burst(cluster: Cluster, flaky: FlakyTarget, n: int, **limits: object) -> None:
    """Start Baton with `limits` on the target, and complete `n` partitions at once."""
    cluster.write_contracts({"report.yaml": CONTRACT})
    cluster.write_config(
        "http://127.0.0.1:9",
        targets={"flaky": {"kind": "webhook", "url": flaky.url, **limits}},
        worker={"dispatch_concurrency": 16},
    )
    cluster.run()
    events = [{"dataset": "warehouse.orders", "partition": d, "event_id": f"b/{d}"} for d in DAYS]
    httpx.post(cluster.api + "/v1/events", json={"events": events[:n]}, timeout=10)


def test_at_most_max_in_flight_runs_reach_a_target_under_a_burst(
    cluster: Cluster, flaky: FlakyTarget
) -> None:
    flaky.delay = 0.4
    burst(cluster, flaky, 24, max_in_flight=3)
    wait_until(lambda: len(flaky.delivered()) == 24, timeout=60)
    assert flaky.most_at_once == 3  # the limit was reached, and held
    assert len(set(flaky.delivered())) == 24


def test_starts_per_second_are_spread_out_and_none_is_dropped(
    cluster: Cluster, flaky: FlakyTarget
) -> None:
    burst(cluster, flaky, 16, max_starts_per_second=4)
    wait_until(lambda: len(flaky.delivered()) == 16, timeout=60)
    times = sorted(c.at for c in flaky.calls)
    busiest = max(sum(1 for t in times if s <= t < s + 1.0) for s in times)
    assert busiest <= 4, busiest
    assert times[-1] - times[0] >= 3.0


class _Down:
    """A target that never answers: every call is a transient failure."""

    def __init__(self) -> None:
        self.calls = 0

    async def trigger(self, request: TriggerRequest) -> Receipt:
        self.calls += 1
        raise TargetUnavailable("connection refused")

    async def status(self, ref: str) -> RunStatus:
        return RunStatus("queued")

    async def check(self, spec: dict[str, object]) -> list[str]:
        return []

    async def aclose(self) -> None:
        return None


async def test_the_default_retry_policy_outlasts_an_hour_and_gives_up_after_a_day(
    redis_url: str,
) -> None:
    """The default `retry:` (1 s doubling to 5 min, jitter 20 %, max_age 24 h) with no
    breaker: the trigger is still retrying after an hour and dead-letters at one day."""
    contract = Contract.parse(
        {"name": "report", "partitioned": "daily", "when": "orders", "trigger": {"target": "t"}}
    )
    client = aioredis.Redis.from_url(redis_url)
    store = RedisStore(client, Keys(), max_backlog=1000, dedup_ttl_s=60)
    await store.ensure_groups()
    made = datetime.now(UTC)
    event = Event(dataset="orders", partition="2026-11-23", event_id="o1").completed(made)
    [outcome] = await store.record(Matcher([contract]).plan(event, made, "1-0").ops, "v1")
    now = made
    down = _Down()
    gates = Gates(store.gates, {})  # no breaker: the policy alone
    dispatcher = Dispatcher(store, lambda: {"report": contract}, {"t": down}, RetrySettings(),
                            lambda: now, random.Random(7), gates=gates)  # fmt: skip
    ends = []
    while True:
        read = await client.xreadgroup("dispatchers", "me", {"baton:triggers": ">"}, count=1)
        entry = read[0][1][0][0].decode()
        state = await dispatcher.handle(entry, str(outcome.trigger_id))
        ends.append((now - made, state))
        if state == "failed":
            break
        due = await client.zscore("baton:retries", str(outcome.trigger_id))
        now = datetime.fromtimestamp(due / 1000, UTC)
        await store.move_due_retries(int(due))
    await client.aclose()
    still_retrying_at_an_hour = [s for age, s in ends if age >= timedelta(hours=1)]
    assert still_retrying_at_an_hour[0] == "retrying"
    assert timedelta(hours=23, minutes=50) <= ends[-1][0] <= timedelta(hours=24)
    assert 280 <= down.calls <= 310  # 9 doubling waits, then one every 5 min (+-20 %)
