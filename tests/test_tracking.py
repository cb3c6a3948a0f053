"""Run tracking on a real Redis: one lane per target, looks at once up to the target's
bound, a hung orchestrator holding back only its own runs, a dispatch waking its lane,
and each duty's health as `/readyz` reads it."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from redis.asyncio import Redis as AsyncRedis

from broker.contracts.model import Contract
from broker.core.events import Event, from_wire
from broker.core.settings import RetrySettings, Settings
from broker.dispatch.dispatcher import Dispatcher
from broker.dispatch.gate import Gates
from broker.dispatch.target import Receipt, RunStatus, TriggerRequest
from broker.followup.duties import Duty, run_duty
from broker.followup.tracking import RunTracker
from broker.ingest.intake import ingest
from broker.matching.loaded import load_checked
from broker.matching.matcher import Matcher
from broker.runtime import Runtime
from broker.state import duties
from broker.state.duties import DutyBeats
from broker.state.health import RedisHealth
from broker.state.keys import Keys
from broker.state.redis_store import RedisStore
from broker.worker import Worker


def contract(name: str, target: str) -> Contract:
    spec = f"{{name: {name}, partitioned: daily, when: orders, trigger: {{target: {target}}}}}"
    return Contract.parse(yaml.safe_load(spec))


CONTRACTS = {"fast_report": contract("fast_report", "fast"),
             "slow_report": contract("slow_report", "slow")}  # fmt: skip


class Orchestrator:
    """A target that starts runs at once; while `hung`, asking for a run's state hangs
    (a fault injector: an orchestrator that accepts connections and answers nothing)."""

    def __init__(self, hung: bool = False) -> None:
        self.hung = asyncio.Event() if hung else None
        self.asking = 0
        self.most_at_once = 0
        self.started = 0

    async def trigger(self, request: TriggerRequest) -> Receipt:
        self.started += 1
        return Receipt(ref=f"run-{self.started}", url="")

    async def status(self, ref: str) -> RunStatus:
        self.asking += 1
        self.most_at_once = max(self.most_at_once, self.asking)
        try:
            if self.hung is not None:
                await self.hung.wait()
            return RunStatus("succeeded", "done")
        finally:
            self.asking -= 1

    async def aclose(self) -> None:
        return None


async def dispatch_days(
    store: RedisStore,
    dispatcher: Dispatcher,
    days: int,
    contracts: dict[str, Contract],
    stream: str = "baton:triggers",
) -> None:
    """Fire and dispatch `contracts` for `days` partitions, through the real matcher,
    Lua and dispatcher."""
    matcher = Matcher(list(contracts.values()))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for day in range(days):
        partition = (start + timedelta(days=day)).date().isoformat()
        event = Event(dataset="orders", partition=partition, event_id=f"o-{day}")
        plan = matcher.plan(event.completed(start), start, f"{day + 1}-0")
        await store.record(plan.ops, "v1")
    read = await store.redis.xreadgroup(store.keys.dispatchers_group, "me", {stream: ">"})
    for entry_id, fields in read[0][1]:
        assert await dispatcher.handle(entry_id.decode(), fields[b"t"].decode()) == "succeeded"


async def test_a_hung_target_holds_back_only_its_own_runs(store: RedisStore) -> None:
    fast, slow = Orchestrator(), Orchestrator(hung=True)
    targets = {"fast": fast, "slow": slow}
    dispatcher = Dispatcher(store, lambda: CONTRACTS, targets, RetrySettings(),
                            rng=random.Random(1), gates=Gates(store.gates, {}))  # fmt: skip
    tracker = RunTracker(store, lambda: CONTRACTS, targets, timedelta(seconds=1),
                         timedelta(seconds=5), concurrency={"fast": 8, "slow": 4})  # fmt: skip
    await dispatch_days(store, dispatcher, 40, CONTRACTS)
    assert await store.redis.zcard(store.keys.tracking_of("fast")) == 40
    assert await store.redis.zcard(store.keys.tracking_of("slow")) == 40

    stop = asyncio.Event()
    health = RedisHealth(store.redis, logging.getLogger("test"), "waits")
    beats = DutyBeats(store.redis, store.keys, "me")
    lanes = [Duty(lane.duty, lambda lane=lane: tracker.lane_round(lane), lane.wake)
             for lane in tracker.lanes.values()]  # fmt: skip
    running = asyncio.gather(*(run_duty(d, stop, health, beats) for d in lanes))
    fast_key, slow_key = store.keys.tracking_of("fast"), store.keys.tracking_of("slow")

    async def tracked(key: str) -> int:
        return int(await store.redis.zcard(key))

    # every fast run is followed to its end while the slow target answers nothing
    deadline = time.monotonic() + 60
    while await tracked(fast_key):
        assert time.monotonic() < deadline, "waited 60s for the fast target's 40 runs"
        await asyncio.sleep(0.05)
    assert fast.most_at_once <= 8
    assert slow.most_at_once == 4 and slow.asking == 4  # its bound, and no more
    assert await tracked(slow_key) == 40
    records = [await store.get_trigger(f"baton:fast_report:2026-01-{d:02d}:0") for d in (1, 31)]
    assert all(r is not None and r.run_state == "succeeded" for r in records)

    # the slow target answers again: its runs are followed to their end too
    assert slow.hung is not None
    slow.hung.set()
    deadline = time.monotonic() + 60
    while await tracked(slow_key):
        assert time.monotonic() < deadline, "waited 60s for the slow target's 40 runs"
        await asyncio.sleep(0.05)
    stop.set()
    await running
    assert slow.most_at_once == 4


async def test_a_dispatch_wakes_its_lane_for_the_first_look(store: RedisStore) -> None:
    hook = Orchestrator()
    contracts = {"fast_report": CONTRACTS["fast_report"]}
    dispatcher = Dispatcher(store, lambda: contracts, {"fast": hook}, RetrySettings(),
                            rng=random.Random(1), gates=Gates(store.gates, {}))  # fmt: skip
    tracker = RunTracker(store, lambda: contracts, {"fast": hook}, timedelta(seconds=1),
                         timedelta(seconds=5))  # fmt: skip
    dispatcher.on_dispatched = tracker.wake
    lane = tracker.lanes["fast"]
    assert await tracker.lane_round(lane) == 1.0  # nothing tracked: it would rest 1 s
    stop = asyncio.Event()
    health = RedisHealth(store.redis, logging.getLogger("test"), "waits")
    beats = DutyBeats(store.redis, store.keys, "me")
    # a lane that would rest a minute between rounds, unless woken
    duty = Duty(lane.duty, lambda: _then(tracker.lane_round(lane), 60.0), lane.wake)
    running = asyncio.create_task(run_duty(duty, stop, health, beats))
    await asyncio.sleep(0.1)  # it has done its first round and rests
    started = time.monotonic()
    await dispatch_days(store, dispatcher, 1, contracts)
    key = store.keys.tracking_of("fast")
    while await store.redis.zcard(key):
        assert time.monotonic() - started < 30, "waited 30s for the woken lane's look"
        await asyncio.sleep(0.01)
    stop.set()  # looked at well within the minute's rest: the dispatch woke the lane
    await running
    record = await store.get_trigger("baton:fast_report:2026-01-01:0")
    assert record is not None and record.run_state == "succeeded"


async def _then(round_: object, pause: float) -> float:
    await round_  # type: ignore[misc]
    return pause


async def test_the_duty_report_says_which_duty_is_behind_and_by_how_much(
    store: RedisStore,
) -> None:
    keys = store.keys
    report = await duties.report(store.redis, keys, ["hook"])
    assert report["tracking:hook"] == {"state": "no worker", "behind_s": 0.0,
                                       "last_round_s": None}  # fmt: skip
    assert report["gates"]["behind_s"] is None  # no queue of due work to measure
    now_ms = int(time.time() * 1000)
    await store.redis.zadd(keys.tracking_of("hook"), {"t1": now_ms - 45_000, "t2": now_ms})
    await store.redis.zadd(keys.retries, {"t3": now_ms + 60_000})
    beats = DutyBeats(store.redis, keys, "me")
    for name in ("tracking:hook", "retries"):
        await beats.beat(name)
    await store.redis.zadd(keys.duty_beats("gates"), {"gone": now_ms - 120_000})
    report = await duties.report(store.redis, keys, ["hook"])
    hook = report["tracking:hook"]
    assert hook["state"] == "behind" and 44 <= hook["behind_s"] <= 60, hook
    assert report["retries"]["state"] == "ok" and report["retries"]["behind_s"] == 0.0
    assert report["gates"]["state"] == "stalled" and report["gates"]["last_round_s"] >= 120
    assert report["deadlines"]["state"] == "no worker"


class Answered(Orchestrator):
    """A target whose run is over when it answers, as a webhook's is."""

    async def trigger(self, request: TriggerRequest) -> Receipt:
        self.started += 1
        return Receipt(ref=f"HTTP 200 #{self.started}", finished=RunStatus("succeeded", "sent"))


async def test_a_run_over_when_answered_is_settled_at_dispatch_and_never_looked_at(
    redis_url: str,
) -> None:
    client = AsyncRedis.from_url(redis_url)
    store = RedisStore(client, Keys("settle"), max_backlog=1000, dedup_ttl_s=60, history_s=3600)
    await store.ensure_groups()
    hook = Answered()
    contracts = {"fast_report": CONTRACTS["fast_report"]}
    dispatcher = Dispatcher(store, lambda: contracts, {"fast": hook}, RetrySettings(),
                            rng=random.Random(1), gates=Gates(store.gates, {}))  # fmt: skip
    woken: list[str] = []
    dispatcher.on_dispatched = woken.append
    await dispatch_days(store, dispatcher, 3, contracts, stream=store.keys.triggers)
    assert hook.started == 3
    assert await client.zcard(store.keys.tracking_of("fast")) == 0  # nothing to follow
    assert await client.zcard(store.keys.target_running("fast")) == 0
    assert woken == []  # and no lane woken for it
    for day in ("2026-01-01", "2026-01-02", "2026-01-03"):
        trigger_id = f"baton:fast_report:{day}:0"
        record = await store.get_trigger(trigger_id)
        assert record is not None
        assert (record.state, record.run_state, record.run_detail) == ("succeeded", "succeeded",
                                                                       "sent")  # fmt: skip
        assert record.run_checks == 1 and record.downstream_ref.startswith("HTTP 200")
        ttl = await client.pttl(store.keys.trigger(trigger_id))  # settled: kept for the window
        assert 3_500_000 < ttl <= 3_600_000
    assert hook.asking == 0
    await client.aclose()


async def test_a_run_over_when_answered_is_still_followed_when_it_produces(
    store: RedisStore,
) -> None:
    """Its outputs are the run tracker's to publish: the dispatch wakes its lane."""
    hook = Answered()
    spec = ("{name: fast_report, partitioned: daily, when: orders, trigger: {target: fast},"
            " produces: [report]}")  # fmt: skip
    contracts = {"fast_report": Contract.parse(yaml.safe_load(spec))}
    dispatcher = Dispatcher(store, lambda: contracts, {"fast": hook}, RetrySettings(),
                            rng=random.Random(1), gates=Gates(store.gates, {}))  # fmt: skip
    woken: list[str] = []
    dispatcher.on_dispatched = woken.append
    await dispatch_days(store, dispatcher, 1, contracts)
    assert woken == ["fast"]
    tracked = await store.redis.zrange(store.keys.tracking_of("fast"), 0, -1)
    assert tracked == [b"baton:fast_report:2026-01-01:0"]
    record = await store.get_trigger("baton:fast_report:2026-01-01:0")
    assert record is not None and record.run_state == "queued"


CHAIN = """
name: first
partitioned: daily
when: raw.orders
trigger: {target: hook}
produces: [clean.orders]
---
name: second
partitioned: daily
when: clean.orders
trigger: {target: hook}
"""


async def test_what_a_run_produced_is_matched_at_once_ahead_of_the_stream(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's events reader is stuck (a backlog ahead of the produced event, here
    no reader at all): the chain's next step still fires, from the tracker's own match;
    when the reader does get to the entry, it fires nothing again."""
    (tmp_path / "chain.yaml").write_text(CHAIN)
    hook_config = {"kind": "webhook", "url": "http://127.0.0.1:9/"}
    settings = Settings(redis_url=redis_url, contracts=tmp_path, namespace="ahead",
                        targets={"hook": hook_config})  # fmt: skip
    runtime = await Runtime.open(settings)
    hook = Answered()
    worker = Worker(runtime, load_checked(settings), {"hook": hook})
    monkeypatch.setattr(worker, "readers", lambda match, dispatch: [])
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    store = runtime.store
    await ingest(store, [Event(dataset="raw.orders", partition="2026-11-23", event_id="r1")])
    keys = store.keys
    # What the events reader would hand on: the one upstream event.
    batch = await store.read_new(keys.events, keys.matchers_group, worker.name, 10)
    assert [from_wire(f["e"], i)[0].event_id for i, f in batch] == ["r1"]
    await worker.process_events(batch)
    second = "baton:second:2026-11-23:0"
    started = time.monotonic()
    while (record := await store.get_trigger(second)) is None or record.state != "succeeded":
        assert time.monotonic() - started < 30, "waited 30s for the chain's second step"
        await asyncio.sleep(0.01)
    assert hook.started == 2  # first, then second: no reader read clean.orders
    # The reader reaches the produced entry later: recorded again, it fires nothing.
    later = await store.read_new(keys.events, keys.matchers_group, worker.name, 10)
    assert [from_wire(f["e"], i)[0].dataset for i, f in later] == ["clean.orders"]
    outcomes = await worker.process_events(later)
    assert [o.trigger_id for o in outcomes] == [None]
    assert (await store.redis.xpending(keys.events, keys.matchers_group))["pending"] == 0
    stop.set()
    await running
    assert hook.started == 2
    await runtime.close()
