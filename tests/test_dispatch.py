"""The dispatcher on a real Redis: success, retry with backoff, dead letters."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import yaml

from broker.contracts.model import Contract
from broker.core.errors import TargetRejected, TargetUnavailable
from broker.core.events import Event
from broker.core.settings import RetrySettings
from broker.dispatch.backoff import delay
from broker.dispatch.dispatcher import Dispatcher
from broker.dispatch.gate import Gates
from broker.dispatch.target import Receipt, TriggerRequest
from broker.matching.matcher import Matcher
from broker.state.redis_store import RedisStore

CONTRACT = Contract.parse(
    yaml.safe_load(
        """
        name: report
        partitioned: daily
        when: orders
        trigger: {target: hook, body: {day: "{{ partition }}", start: "{{ partition_start }}"}}
        """
    )
)
POLICY = RetrySettings(initial=timedelta(seconds=1), factor=2, jitter=0, max_attempts=3)


class Scripted:
    """A target that answers from a script of outcomes: a fault injector."""

    def __init__(self, *outcomes: Exception | None) -> None:
        self.outcomes = list(outcomes)
        self.requests: list[TriggerRequest] = []

    async def trigger(self, request: TriggerRequest) -> Receipt:
        self.requests.append(request)
        outcome = self.outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return Receipt(ref="run-1", url="http://runs/1")

    async def aclose(self) -> None:
        return None


async def claimed(store: RedisStore) -> tuple[str, str]:
    """Fire one trigger through the real matcher and Lua, and read its stream entry."""
    event = Event(dataset="orders", partition="2026-11-23", event_id="o1").completed(
        datetime(2026, 11, 24, tzinfo=UTC)
    )
    plan = Matcher([CONTRACT]).plan(event, datetime(2026, 11, 24, tzinfo=UTC), "1-0")
    [outcome] = await store.record(plan.ops, "v1")
    assert outcome.trigger_id is not None
    read = await store.redis.xreadgroup("dispatchers", "me", {"baton:triggers": ">"})
    entry_id = read[0][1][0][0].decode()
    return entry_id, outcome.trigger_id


def dispatcher(store: RedisStore, target: Scripted) -> Dispatcher:
    clock = lambda: datetime(2026, 11, 24, tzinfo=UTC)  # noqa: E731
    return Dispatcher(
        store, lambda: {"report": CONTRACT}, {"hook": target}, POLICY, clock, random.Random(1),
        gates=Gates(store.gates, {}),
    )  # fmt: skip


async def test_a_successful_dispatch_records_the_downstream_run(store: RedisStore) -> None:
    entry, tid = await claimed(store)
    target = Scripted(None)
    assert await dispatcher(store, target).handle(entry, tid) == "succeeded"
    record = await store.get_trigger(tid)
    assert record is not None
    assert (record.state, record.attempts, record.downstream_ref) == ("succeeded", 1, "run-1")
    assert target.requests[0].spec == {
        "body": {"day": "2026-11-23", "start": "2026-11-23T00:00:00+00:00"}
    }
    assert (await store.redis.xpending("baton:triggers", "dispatchers"))["pending"] == 0


class ReadsNone(Scripted):
    """A target that says it reads no trigger's inputs (as Airflow, Dagster, Prefect)."""

    def reads_inputs(self, fields: dict[str, object]) -> bool:
        return False


async def test_a_trigger_reads_its_inputs_back_only_when_its_template_or_target_does(
    store: RedisStore,
) -> None:
    entry, tid = await claimed(store)
    quiet = ReadsNone(None)
    await dispatcher(store, quiet).handle(entry, tid)
    assert "inputs" not in quiet.requests[0].context  # neither reads them: never made
    assert quiet.requests[0].context["partition_start"] == "2026-11-23T00:00:00+00:00"
    entry, tid = await claimed_again(store)
    asks = Scripted(None)  # says nothing: given them
    await dispatcher(store, asks).handle(entry, tid)
    assert asks.requests[0].context["inputs"]["orders"]["event_id"] == "o2"


async def claimed_again(store: RedisStore) -> tuple[str, str]:
    """The same partition restated: its next generation's trigger entry."""
    event = Event(dataset="orders", partition="2026-11-23", event_id="o2").completed(
        datetime(2026, 11, 25, tzinfo=UTC)
    )
    plan = Matcher([CONTRACT]).plan(event, datetime(2026, 11, 25, tzinfo=UTC), "2-0")
    [outcome] = await store.record(plan.ops, "v1")
    assert outcome.trigger_id is not None, "the restatement fires generation 1"
    read = await store.redis.xreadgroup("dispatchers", "me", {"baton:triggers": ">"})
    return read[0][1][0][0].decode(), outcome.trigger_id


async def test_a_redelivered_entry_after_success_is_not_sent_again(store: RedisStore) -> None:
    entry, tid = await claimed(store)
    target = Scripted(None)
    await dispatcher(store, target).handle(entry, tid)
    assert await dispatcher(store, target).handle(entry, tid) == "done"
    assert len(target.requests) == 1


async def test_a_transient_error_schedules_a_retry_with_backoff(store: RedisStore) -> None:
    entry, tid = await claimed(store)
    target = Scripted(TargetUnavailable("503"))
    assert await dispatcher(store, target).handle(entry, tid) == "retrying"
    due = await store.redis.zscore("baton:retries", tid)
    assert due == datetime(2026, 11, 24, 0, 0, 1, tzinfo=UTC).timestamp() * 1000
    record = await store.get_trigger(tid)
    assert record is not None and (record.state, record.last_error) == ("retrying", "503")
    assert await store.move_due_retries(int(due)) == 1
    assert await store.redis.zcard("baton:retries") == 0


async def test_a_permanent_error_dead_letters_at_once(store: RedisStore) -> None:
    entry, tid = await claimed(store)
    assert (
        await dispatcher(store, Scripted(TargetRejected("unknown DAG"))).handle(entry, tid)
        == "failed"
    )
    [(_, fields)] = await store.redis.xrange("baton:dlq")
    assert fields[b"trigger_id"].decode() == tid
    assert fields[b"error"] == b"unknown DAG"


async def test_the_last_transient_failure_dead_letters(store: RedisStore) -> None:
    entry, tid = await claimed(store)
    target = Scripted(*[TargetUnavailable("down")] * 3)
    states = []
    for _ in range(3):
        states.append(await dispatcher(store, target).handle(entry, tid))
    assert states == ["retrying", "retrying", "failed"]
    record = await store.get_trigger(tid)
    assert record is not None and record.last_error == "down (after 3 attempts in 0 s)"


def test_backoff_grows_by_the_factor_and_stops_at_the_cap() -> None:
    policy = RetrySettings(
        initial=timedelta(seconds=1), factor=2, jitter=0, max_delay=timedelta(seconds=5)
    )
    waits = [delay(policy, n, random.Random(0)).total_seconds() for n in range(1, 6)]
    assert waits == [1, 2, 4, 5, 5]


def test_jitter_stays_within_its_band() -> None:
    policy = RetrySettings(initial=timedelta(seconds=10), jitter=0.2)
    rng = random.Random(7)
    waits = [delay(policy, 1, rng).total_seconds() for _ in range(200)]
    assert min(waits) >= 8 and max(waits) <= 12
    assert max(waits) - min(waits) > 1


async def test_a_claim_can_deliver_its_trigger_to_the_claiming_worker(store: RedisStore) -> None:
    event = Event(dataset="orders", partition="2026-11-23", event_id="o1").completed(
        datetime(2026, 11, 24, tzinfo=UTC)
    )
    plan = Matcher([CONTRACT]).plan(event, datetime(2026, 11, 24, tzinfo=UTC), "1-0")
    [outcome] = await store.record(plan.ops, "v1", deliver_to="worker-a")
    assert outcome.delivered_own
    record = await store.get_trigger("baton:report:2026-11-23:0")
    assert record is not None and (record.state, record.attempts) == ("dispatching", 1)
    pending = await store.redis.xpending("baton:triggers", "dispatchers")
    assert pending["pending"] == 1
    assert pending["consumers"] == [{"name": b"worker-a", "pending": 1}]
    # The entry is the claimer's now: another dispatcher reading new entries gets nothing.
    assert await store.redis.xreadgroup("dispatchers", "worker-b", {"baton:triggers": ">"}) == []


async def test_anything_a_target_raises_unexpectedly_is_a_named_dead_letter_not_a_loop(
    store: RedisStore,
) -> None:
    entry, tid = await claimed(store)
    target = Scripted(TypeError("Object of type range is not JSON serializable"))
    assert await dispatcher(store, target).handle(entry, tid) == "failed"
    record = await store.get_trigger(tid)
    assert record is not None and (record.state, record.attempts) == ("failed", 1)
    assert record.last_error == (
        "could not be sent: TypeError: Object of type range is not JSON serializable"
    )
    assert await store.redis.xlen("baton:dlq") == 1
    assert (await store.redis.xpending("baton:triggers", "dispatchers"))["pending"] == 0


async def test_a_trigger_redelivered_past_its_attempts_is_dead_lettered_without_a_call(
    store: RedisStore,
) -> None:
    """A worker that crashes mid-dispatch leaves the entry pending; each redelivery
    counts an attempt, and past max_attempts the trigger ends instead of looping."""
    entry, tid = await claimed(store)
    for _ in range(POLICY.max_attempts or 0):  # three starts that never finished
        assert await store.begin_attempt(tid) is not None
    target = Scripted()
    assert await dispatcher(store, target).handle(entry, tid) == "failed"
    assert target.requests == []
    record = await store.get_trigger(tid)
    assert record is not None and record.attempts == 3  # never more than max_attempts
    assert record.last_error == "gave up after 3 attempts (retry.max_attempts)"
