"""Retention on a real Redis: every key Baton writes is let go after its window, and
nothing past its window makes a trigger id fire twice.

Expiry is made to happen by deleting what Redis would have expired (the TTLs are
checked, not waited for); a fired-marker stands for the partition once its state is gone.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
import yaml
from redis.asyncio import Redis

from broker.contracts.model import Contract
from broker.control.explain import explain_from_store, render_report
from broker.core.events import Event, encode, from_wire, ms_time, stream_text
from broker.matching.matcher import Matcher
from broker.state.backfill_store import Step
from broker.state.deadline_store import Decision
from broker.state.held import ms_iso
from broker.state.keys import Keys
from broker.state.ports import TriggerRecord, named_by
from broker.state.redis_store import RedisStore
from broker.state.retention import Sweeper

HOUR, DAY_S = 3600, 86400
DAY = "2026-11-23"
T0 = datetime(2026, 11, 24, tzinfo=UTC)


def contract(policy: str = "retrigger", partitioned: str = "daily") -> Contract:
    return Contract.parse(yaml.safe_load(f"""
        name: report
        partitioned: {partitioned}
        on_restatement: {policy}
        when: {{all_of: [a, b]}}
        trigger: {{target: hook}}
        """))  # fmt: skip


class Inputs:
    """Events for one contract, recorded as a worker records them (no worker)."""

    def __init__(self, store: RedisStore, contract: Contract) -> None:
        self.store, self.contract = store, contract
        self.matcher = Matcher([contract])
        self.ids = count(1)

    async def land(self, *datasets: str, partition: str = DAY) -> list[str]:
        """Record one new event per dataset; the trigger ids that fired."""
        fired = []
        for dataset in datasets:
            n = next(self.ids)
            event = Event(dataset=dataset, partition=partition or None, event_id=f"e{n}",
                          occurred_at=T0 + timedelta(minutes=n))  # fmt: skip
            plan = self.matcher.plan(event, T0, f"{n}-0")
            outcomes = await self.store.record(plan.ops, "v1")
            fired += [o.trigger_id for o in outcomes if o.trigger_id]
        return fired

    async def expire(self, partition: str = DAY) -> None:
        """What Redis does once the history window has passed: the partition's state and
        its triggers' records are gone (the fired-marker is not)."""
        redis, keys = self.store.redis, self.store.keys
        gone = [keys.partition("report", partition)]
        gone += [k async for k in redis.scan_iter(f"{keys.trigger_prefix()}*")]
        await redis.delete(*gone)


@pytest.fixture
async def inputs(redis_url: str) -> AsyncIterator[Inputs]:
    client = Redis.from_url(redis_url)
    store = RedisStore(client, Keys("keep"), max_backlog=10**9, dedup_ttl_s=60,
                       history_s=HOUR, markers_s=DAY_S)  # fmt: skip
    await store.ensure_groups()
    yield Inputs(store, contract())
    await client.aclose()


async def test_a_fired_partition_is_kept_for_the_history_window_and_its_marker_beyond(
    inputs: Inputs,
) -> None:
    store, redis, keys = inputs.store, inputs.store.redis, inputs.store.keys
    assert await inputs.land("a") == []
    assert HOUR - 5 < await redis.ttl(keys.partition("report", DAY)) <= HOUR  # an open input
    [tid] = await inputs.land("b")
    assert HOUR - 5 < await redis.ttl(keys.partition("report", DAY)) <= HOUR
    gen, ms = await store.fired_marker("report", DAY) or (None, 0)
    assert gen == 0 and abs(ms / 1000 - time.time()) < 60
    assert await redis.ttl(keys.trigger(tid)) == -1  # live: kept until it settles

    [[_, [(entry, _)]]] = await redis.xreadgroup(keys.dispatchers_group, "w", {keys.triggers: ">"})
    await store.dispatched(tid, entry.decode(), "HTTP 200", "http://hook", target="hook")
    assert await redis.xlen(keys.triggers) == 0  # acked, and deleted with it
    assert await redis.ttl(keys.trigger(tid)) == -1  # its run is followed still
    await store.run_seen(keys.tracking_of("hook"), tid, "succeeded", "done", None, "hook")
    assert HOUR - 5 < await redis.ttl(keys.trigger(tid)) <= HOUR  # settled
    assert await redis.zscore(keys.tracking_of("hook"), tid) is None


async def test_a_settled_trigger_keeps_which_events_fed_it_and_drops_the_events(
    inputs: Inputs,
) -> None:
    """Settled, by a look at its run or by the answer of a webhook, a trigger is not
    sent again: of its inputs it keeps the event ids; a dead-lettered one keeps all."""
    store, redis, keys = inputs.store, inputs.store.redis, inputs.store.keys
    tids = [t for day in ("2026-11-20", "2026-11-21", "2026-11-22")
            for t in await inputs.land("a", "b", partition=day)]  # fmt: skip
    live = [await store.get_trigger(t) for t in tids]
    assert all(r is not None and set(r.input_ids.values()) == {e["event_id"]
               for e in r.inputs.values()} and len(r.input_ids) == 2 for r in live)  # fmt: skip
    await store.dispatched(tids[0], "", "HTTP 200", "http://hook", target="hook")
    await store.run_seen(keys.tracking_of("hook"), tids[0], "succeeded", "done", None, "hook")
    await store.dispatched(tids[1], "", "HTTP 200", "http://hook", target="hook",
                           settled=("succeeded", "delivered"))  # fmt: skip
    await store.dead_letter(tids[2], "", "HTTP 500", target="hook")
    for tid, before in zip(tids, live, strict=True):
        settled = tid != tids[2]
        assert await redis.hexists(keys.trigger(tid), "inputs") != settled
        record = await store.get_trigger(tid)
        assert record is not None and before is not None
        assert record.input_ids == before.input_ids
        assert record.inputs == ({} if settled else before.inputs)
        assert HOUR - 5 < await redis.ttl(keys.trigger(tid)) <= HOUR
    assert await store.revive(tids[2], [])
    revived, dead = await store.get_trigger(tids[2]), live[2]
    assert revived is not None and dead is not None and revived.inputs == dead.inputs


async def test_a_trigger_whose_inputs_are_not_json_settles_all_the_same(inputs: Inputs) -> None:
    store, redis, keys = inputs.store, inputs.store.redis, inputs.store.keys
    [tid] = await inputs.land("a", "b")
    await redis.hset(keys.trigger(tid), "inputs", "{not json")
    await store.dispatched(tid, "", "HTTP 200", "http://hook", target="hook",
                           settled=("succeeded", "delivered"))  # fmt: skip
    assert await redis.hget(keys.trigger(tid), "inputs") == b"{not json"
    assert await redis.hget(keys.trigger(tid), "run_state") == b"succeeded"
    assert HOUR - 5 < await redis.ttl(keys.trigger(tid)) <= HOUR


async def test_a_dead_letter_is_kept_for_the_window_and_older_ones_are_trimmed(
    inputs: Inputs,
) -> None:
    store, redis, keys = inputs.store, inputs.store.redis, inputs.store.keys
    old_ms = int((time.time() - 2 * HOUR) * 1000)
    await redis.xadd(keys.dead_letters, {"trigger_id": "old", "error": "x", "at": "then"},
                     id=f"{old_ms}-0")  # fmt: skip
    [tid] = await inputs.land("a", "b")
    await store.dead_letter(tid, "", "HTTP 400: no such DAG", target="hook")
    assert HOUR - 5 < await redis.ttl(keys.trigger(tid)) <= HOUR
    assert [d.trigger_id for d in await store.dead_letters()] == [tid]  # "old" trimmed
    assert await store.revive(tid, [d.entry_id for d in await store.dead_letters()])
    assert await redis.ttl(keys.trigger(tid)) == -1  # live again


@pytest.mark.parametrize("policy", ["retrigger", "ignore"])
async def test_an_event_for_an_expired_partition_is_a_restatement_never_a_first_firing(
    inputs: Inputs, policy: str
) -> None:
    inputs.matcher = Matcher([contract(policy)])
    assert await inputs.land("a", "b") == [f"baton:report:{DAY}:0"]
    await inputs.expire()
    if policy == "retrigger":
        assert await inputs.land("a") == []  # generation 1 waits for b again
        assert await inputs.land("b") == [f"baton:report:{DAY}:1"]
    else:
        assert await inputs.land("a", "b") == []  # ignored, as before it expired
    state = await inputs.store.read_partition("report", DAY)
    assert state.restored_from is not None and state.restored_from[0] == 0


async def test_an_unpartitioned_contract_goes_on_from_its_marker(inputs: Inputs) -> None:
    inputs.matcher = Matcher([contract("retrigger", "none")])
    assert await inputs.land("a", "b", partition="") == ["baton:report:_:0"]
    await inputs.expire(partition="")
    assert await inputs.land("a", "b", partition="") == ["baton:report:_:1"]


async def test_a_backfill_over_an_expired_partition_skips_it_or_reruns_it_next(
    inputs: Inputs,
) -> None:
    store = inputs.store
    await inputs.land("a", "b")
    await inputs.expire()
    now = datetime.now(UTC)
    plain = await store.backfills.create("report", DAY, DAY, "oldest_first", 2, False, [DAY], now)
    step = Step(plain, 0, "fire", ["a\x1f2026-11-23\x1f", "b\x1f2026-11-23\x1f"], "v1", now)
    assert await store.backfills.step(step) == ("skipped", f"already ran as baton:report:{DAY}:0")
    forced = await store.backfills.create("report", DAY, DAY, "oldest_first", 2, True, [DAY], now)
    rerun = Step(forced, 0, "rerun", step.slots, "v1", now)
    assert await store.backfills.step(rerun) == ("fired", f"baton:report:{DAY}:1")


async def test_a_deadline_of_a_partition_that_fired_and_expired_is_met(inputs: Inputs) -> None:
    deadlines, now = inputs.store.deadlines, datetime.now(UTC)
    await inputs.land("a", "b")
    await inputs.expire()
    await deadlines.watch([("report", DAY, 0)])
    due = Decision("report", DAY, now, now, "trigger", ["a\x1f2026-11-23\x1f"], "v1")
    assert await deadlines.decide(due) == ("met", "")
    assert await deadlines.alert_of("report", DAY) is None


async def test_explain_says_what_expired_and_what_its_marker_still_knows(
    inputs: Inputs,
) -> None:
    store = inputs.store
    await inputs.land("a", "b")
    await inputs.expire()
    report = await explain_from_store(store, inputs.contract, DAY)
    assert report["expired"]["what"] == "state"
    assert report["expired"]["trigger_id"] == f"baton:report:{DAY}:0"
    text = render_report(report)
    assert "expired: this partition's state is past the history window" in text
    assert f"trigger: baton:report:{DAY}:0 expired" in text

    await inputs.land("a")  # a restatement: the state is back, from the marker
    report = await explain_from_store(store, inputs.contract, DAY)
    assert report["expired"]["what"] == "earlier state" and report["generation"] == 1
    assert "expired: what came before generation 1" in render_report(report)


async def test_a_trigger_record_past_its_window_reads_expired(inputs: Inputs) -> None:
    [tid] = await inputs.land("a", "b")
    await inputs.store.redis.delete(inputs.store.keys.trigger(tid))
    report = await explain_from_store(inputs.store, inputs.contract, DAY)
    assert report["expired"] == {"what": "trigger", "trigger_id": tid}
    text = render_report(report)
    assert f"trigger: {tid} expired (its record is past the history window)" in text


async def test_the_sweep_drops_old_markers_and_alerts_and_keeps_what_was_written_since(
    inputs: Inputs,
) -> None:
    redis, keys = inputs.store.redis, inputs.store.keys
    now_ms = int(time.time() * 1000)
    old, new = now_ms - 2 * DAY_S * 1000, now_ms - 1000
    await redis.hset(keys.fired("report"), mapping={f"p{i}": f"0:{old}" for i in range(1200)})
    await redis.hset(keys.fired("report"), mapping={"fresh": f"3:{new}", "odd": "junk"})
    then = datetime.fromtimestamp(old / 1000, UTC).isoformat()
    await redis.hset(keys.deadline_alerts, "report|p1", json.dumps({"alerted_at": then}))
    await redis.hset(keys.deadline_alerts, "report|p2", json.dumps({"alerted_at": "soon"}))
    sweeper = Sweeper(redis, keys, DAY_S * 1000)
    dropped = 0
    for _ in range(10):  # a pass, a slice at a time
        dropped += await sweeper.round(["report"], now_ms)
    assert dropped == 1201
    assert sorted(await redis.hkeys(keys.fired("report"))) == [b"fresh", b"odd"]
    assert await redis.hkeys(keys.deadline_alerts) == [b"report|p2"]
    # A marker written again between the read and the sweep is new: it stays.
    await redis.hset(keys.fired("report"), "again", f"1:{now_ms}")
    assert await sweeper._sweep(keys=[keys.fired("report")], args=["again", f"0:{old}"]) == 0
    assert await redis.hexists(keys.fired("report"), "again")


async def test_the_embedded_redis_keeps_a_partition_with_its_events_compact(
    inputs: Inputs,
) -> None:
    """Events of ~250 B would turn Redis's default (64 B values) hash into a hashtable,
    half again as big: the embedded Redis keeps values up to 1 KB compact."""
    await inputs.land("a")
    key = inputs.store.keys.partition("report", DAY)
    assert await inputs.store.redis.object("encoding", key) in (b"ziplist", b"listpack")


async def test_an_event_is_kept_without_its_defaults_and_read_back_whole(
    inputs: Inputs,
) -> None:
    """`status: success` and empty metadata are left out of every copy kept (33 B
    each); what reads a copy (explain, a trigger's inputs, templates) sees them."""
    store, keys = inputs.store, inputs.store.keys
    await inputs.land("a")
    [tid] = await inputs.land("b")
    raw = await store.redis.hgetall(keys.partition("report", DAY))
    held = {k.decode(): v.decode() for k, v in raw.items() if k.startswith(b"i:")}
    assert len(held) == 2 and all("status" not in v and "metadata" not in v for v in held.values())
    assert all(v.count("e1") + v.count("e2") <= 1 for v in held.values())  # the id once
    state = await store.read_partition("report", DAY)
    assert {e["status"] for e in state.successes.values()} == {"success"}
    record = await store.get_trigger(tid)
    assert record is not None and len(record.inputs) == 2
    assert all(e["status"] == "success" and e["metadata"] == {} for e in record.inputs.values())


def test_a_stream_entry_says_when_it_was_received_by_its_id() -> None:
    """A stream entry leaves out `received_at` (its id says it) and an `occurred_at`
    nobody gave (it reads as `received_at`); one written with them keeps them. It names
    dataset, partition and id in text of their own; the JSON an earlier Baton wrote
    reads the same."""
    [(_, stream)] = [stream_text(Event(dataset="a", event_id="e1"))]
    assert stream == "a\x1e\x1ee1\x1e"  # nothing else to say
    rich = Event(dataset="a b", partition="2026-11-23", event_id="e 9", status="failed",
                 metadata={"rows": 3, "note": "a\x1eb\nc"})  # fmt: skip
    for encoded in (stream_text(rich)[1], encode(rich)[1]):
        assert "\n" not in encoded and from_wire(encoded, "1-0")[0] == rich.model_copy(
            update={"occurred_at": ms_time(1)}
        )
    ms = int(T0.timestamp() * 1000) + 250
    event, received = from_wire(stream, f"{ms}-3")
    assert received == T0 + timedelta(milliseconds=250)
    assert event.occurred_at == received
    older = '{"received_at":"2026-11-24T00:00:00+00:00","dataset":"a","event_id":"e2"}'
    assert from_wire(older, "1-0")[1] == T0
    timed = Event(dataset="a", event_id="e3", occurred_at=T0 - timedelta(hours=1))
    again, _ = from_wire(stream_text(timed)[1], f"{ms}-0")
    assert again.occurred_at == timed.occurred_at
    with pytest.raises(ValueError):
        from_wire(stream, "")


@pytest.mark.parametrize("partitioned", ["daily", "none"])
async def test_a_slot_keeps_only_what_it_cannot_tell_and_reads_back_whole(
    inputs: Inputs, partitioned: str
) -> None:
    """A slot leaves out of an event what the slot or its value says (id, dataset, the
    slot's partition, received_at, defaults, an occurred_at that is received_at); the
    partition and the trigger read the same whole events back."""
    store, redis, keys = inputs.store, inputs.store.redis, inputs.store.keys
    inputs.contract = contract(partitioned=partitioned)
    inputs.matcher = Matcher([inputs.contract])
    ms = int(T0.timestamp() * 1000) + 7
    at = T0 + timedelta(milliseconds=7)
    plain = Event(dataset="a", partition=DAY, event_id="p1", occurred_at=at)
    rich = Event(dataset="b", partition=DAY, event_id="r1", occurred_at=T0 - timedelta(hours=1),
                 metadata={"rows": 5})  # fmt: skip
    ops = [*inputs.matcher.plan(plain, at, f"{ms}-0").ops,
           *inputs.matcher.plan(rich, at, f"{ms}-1").ops]  # fmt: skip
    [_, fired] = await store.record(ops, "v1")
    key = keys.partition("report", DAY if partitioned == "daily" else "")
    raw = {k.decode(): v.decode() for k, v in (await redis.hgetall(key)).items()}
    values = {k[2:].split("\x1f")[0]: v.split("\x1e") for k, v in raw.items() if k[:2] == "i:"}
    assert [v[1] for v in values.values()] == ["", ""]  # landed when the stream took it
    rests = {dataset: v[3] for dataset, v in values.items()}
    kept_partition = {"partition": DAY} if partitioned == "none" else {}
    rich_rest = {"occurred_at": "2026-11-23T23:00:00Z", "metadata": {"rows": 5}, **kept_partition}
    assert {k: json.loads(v) for k, v in rests.items()} == {"a": kept_partition, "b": rich_rest}
    state = await store.read_partition("report", DAY if partitioned == "daily" else "")
    stamp = at.isoformat()
    whole_a = {"dataset": "a", "partition": DAY, "event_id": "p1", "status": "success",
               "metadata": {}, "occurred_at": stamp, "received_at": stamp}  # fmt: skip
    assert [e for e in state.successes.values() if e["dataset"] == "a"] == [whole_a]
    assert fired.trigger_id is not None
    record = await store.get_trigger(fired.trigger_id)
    assert record is not None and record.inputs == state.successes


async def test_triggers_are_listed_newest_first_with_those_listed_before_the_stream(
    inputs: Inputs,
) -> None:
    """Triggers listed by an earlier Baton (a sorted set) are still listed, after the
    new ones, and that set expires after one history window."""
    store, redis, keys = inputs.store, inputs.store.redis, inputs.store.keys
    await redis.zadd(keys.recent_before, {"baton:old:1:0": 1, "baton:old:2:0": 2})
    for tid in ("baton:old:1:0", "baton:old:2:0"):
        await redis.hset(keys.trigger(tid), mapping={"id": tid, "contract": "old"})
    await store.ensure_groups()
    assert HOUR - 5 < await redis.ttl(keys.recent_before) <= HOUR
    await redis.xadd(keys.recent, {"t": "baton:older:0"}, id="1000-0")  # past the window
    fired = [t for day in ("2026-11-20", "2026-11-21")
             for t in await inputs.land("a", "b", partition=day)]  # fmt: skip
    listed = [r.id for r in await store.recent_triggers(10)]
    assert listed == [*reversed(fired), "baton:old:2:0", "baton:old:1:0"]
    assert [r.id for r in await store.recent_triggers(3)] == listed[:3]
    assert await redis.xlen(keys.recent) == 2  # the one past the window was trimmed


async def test_inputs_an_earlier_baton_kept_in_four_fields_are_read_and_replaced(
    inputs: Inputs,
) -> None:
    """A partition hash written before inputs were kept in one field per slot: its
    inputs count, dedupe and order as before, feed the trigger whole, and a slot
    written again is kept the new way."""
    store, redis, keys = inputs.store, inputs.store.redis, inputs.store.keys
    first = Event(dataset="a", partition=DAY, event_id="old-a", occurred_at=T0)
    [plan_a] = inputs.matcher.plan(first, T0, "5-0").ops
    old_event = json.dumps({"event_id": "old-a", "dataset": "a", "partition": DAY,
                            "status": "success", "occurred_at": "2026-11-24T00:00:00Z",
                            "metadata": {"rows": 3}, "received_at": T0.isoformat()})  # fmt: skip
    key = keys.partition("report", DAY)
    s = plan_a.slot
    four = {f"s:{s}": old_event, f"o:{s}": plan_a.order, f"e:{s}": "old-a", f"r:{s}": "1"}
    await redis.hset(key, mapping={**four, "gen": "0"})
    again = first
    older = Event(dataset="a", partition=DAY, event_id="older-a", occurred_at=T0 - timedelta(1))
    outcomes = await store.record([*inputs.matcher.plan(again, T0, "6-0").ops,
                                   *inputs.matcher.plan(older, T0, "7-0").ops], "v1")  # fmt: skip
    assert [o.outcome for o in outcomes] == ["duplicate", "stale"]
    state = await store.read_partition("report", DAY)
    assert state.successes[s]["metadata"] == {"rows": 3}
    [tid] = await inputs.land("b")
    record = await store.get_trigger(tid)
    assert record is not None and record.inputs[s]["event_id"] == "old-a"
    assert record.inputs[s]["metadata"] == {"rows": 3} and len(record.inputs) == 2
    newer = Event(dataset="a", partition=DAY, event_id="new-a", occurred_at=T0 + timedelta(1))
    [outcome] = await store.record(inputs.matcher.plan(newer, T0, "9-0").ops, "v1")
    assert outcome.outcome == "fired"  # a restatement: generation 1
    fields = {k.decode() for k in await redis.hkeys(key)}
    assert f"i:{s}" in fields and not fields & {f"s:{s}", f"o:{s}", f"e:{s}", f"r:{s}"}
    assert (await store.read_partition("report", DAY)).successes[s]["event_id"] == "new-a"


async def test_a_trigger_keeps_its_times_in_ms_and_what_its_id_says_in_its_key(
    inputs: Inputs,
) -> None:
    """Its times read as ISO, as those of a record an earlier Baton wrote do; its
    contract, partition and generation are read from its id, and the partition hash
    that fired it names it by its generation."""
    store, redis, keys = inputs.store, inputs.store.redis, inputs.store.keys
    [tid] = await inputs.land("a", "b")
    raw = {k.decode(): v.decode() for k, v in (await redis.hgetall(keys.trigger(tid))).items()}
    assert "id" not in raw and raw["created_at"].isdigit() and raw["updated_at"].isdigit()
    assert not raw.keys() & {"contract", "partition", "generation"}
    record = await store.get_trigger(tid)
    assert record is not None and record.id == tid
    assert (record.contract, record.partition, record.generation) == ("report", DAY, 0)
    assert b"trigger" not in await redis.hgetall(keys.partition("report", DAY))
    assert (await store.read_partition("report", DAY)).trigger_id == tid
    assert (await store.partitions_of("report"))[0]["trigger_id"] == tid
    created = datetime.fromisoformat(record.created_at)
    assert abs((created - datetime.now(UTC)).total_seconds()) < 60
    started = await store.begin_attempt(tid)
    assert started is not None and started.id == tid and started.created_at == record.created_at
    assert datetime.fromisoformat(started.updated_at) >= created
    older = "baton:report:2026-11-01:0"
    await redis.hset(keys.trigger(older), mapping={
        "id": older, "contract": "report", "partition": "2026-11-01", "state": "succeeded",
        "created_at": "2026-11-01T05:00:00.123456+00:00", "updated_at": "2026-11-01T05:00:01+00:00",
    })  # fmt: skip
    kept = await store.get_trigger(older)
    assert kept is not None and kept.id == older
    assert (kept.created_at, kept.updated_at) == ("2026-11-01T05:00:00.123456+00:00",
                                                  "2026-11-01T05:00:01+00:00")  # fmt: skip


def test_a_landing_time_reads_back_as_the_iso_time_it_was() -> None:
    """held.py formats landing times itself (it is on every firing's path): the same
    text as datetime's, to the ms, whole seconds and all."""
    times = [0, 999, 1000, 86_399_999, 1_796_420_548_000, 1_796_420_548_007, 4_102_444_799_999]
    times += [(i * 7_919_000_003) % 4_102_444_800_000 for i in range(5000)]
    assert [ms_iso(ms) for ms in times] == [ms_time(ms).isoformat() for ms in times]


def test_a_trigger_id_names_its_contract_partition_and_generation() -> None:
    """Partitions may hold colons; `_` is the id's name for no partition, so a record of
    a partition really named `_` says so itself; an id made otherwise names nothing."""
    assert named_by("baton:report:2026-11-01T05:00:3") == ("report", "2026-11-01T05:00", 3)
    assert named_by("baton:report:_:12") == ("report", "", 12)
    assert TriggerRecord.from_hash({"partition": "_"}, "baton:report:_:1").partition == "_"
    assert named_by("t1") == named_by("baton:report:x:y") == ("", "", 0)


async def test_a_partition_names_its_last_trigger_unless_that_firing_was_skipped(
    inputs: Inputs,
) -> None:
    """Skipped (a contract resumed unfired): no trigger; kept as `trigger` by an earlier
    Baton: that one."""
    store, redis, keys = inputs.store, inputs.store.redis, inputs.store.keys
    await redis.hset(
        keys.partition("report", "2026-11-01"),
        mapping={"gen": "1", "fired": "1", "skipped": "2026-11-02T00:00:00+00:00"},
    )
    await redis.hset(
        keys.partition("report", "2026-11-02"),
        mapping={"gen": "0", "fired": "0", "trigger": "baton:report:2026-11-02:0"},
    )
    assert (await store.read_partition("report", "2026-11-01")).trigger_id is None
    state = await store.read_partition("report", "2026-11-02")
    assert state.trigger_id == "baton:report:2026-11-02:0"
    assert await inputs.land("a", "b", partition="2026-11-01") == []  # the first of each
    [fired] = await inputs.land("a", partition="2026-11-01")  # a restatement, fired
    assert fired == "baton:report:2026-11-01:2"  # and `skipped` is gone
    assert (await store.read_partition("report", "2026-11-01")).trigger_id == fired


async def test_a_dedup_key_is_named_by_a_digest_and_one_an_earlier_baton_kept_still_counts(
    inputs: Inputs,
) -> None:
    """Named by the first 20 hex digits of the id's SHA-1 (a long id costs no more), it
    expires after dedup_ttl; an id an earlier Baton remembered by itself (`seen:<id>`)
    is still a duplicate."""
    store, redis, keys = inputs.store, inputs.store.redis, inputs.store.keys
    long_id = "dbt-cloud-run-" + "7" * 400
    event = stream_text(Event(dataset="a", event_id=long_id))
    assert await store.append([event]) != [None]
    name = keys.dedup_prefix() + hashlib.sha1(long_id.encode()).hexdigest()[:20]
    assert 0 < await redis.ttl(name) <= 60
    assert [k async for k in redis.scan_iter(f"{keys.dedup_prefix()}*")] == [name.encode()]
    assert await store.append([event]) == [None]
    await redis.set(keys.dedup_prefix_before() + "old-1", "1", ex=60)
    old = stream_text(Event(dataset="a", event_id="old-1"))
    new = stream_text(Event(dataset="a", event_id="new-1"))
    assert [x is None for x in await store.append([old, new])] == [True, False]
