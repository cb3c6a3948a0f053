"""The worker: matches events into triggers and dispatches triggers to targets.

A composition root. Two consumer groups read the streams (`matchers` on events,
`dispatchers` on triggers) through `StreamReader` loops, and handlers ack what they have
done; a reclaim loop takes over entries a dead consumer left pending, and a retry pump
puts due retries back on the triggers stream.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

from broker.core.events import from_wire
from broker.core.secrets import allowed_env
from broker.dispatch.dispatcher import Dispatcher
from broker.dispatch.gate import Gates
from broker.dispatch.target import Target
from broker.followup.alerting import Alerter, Alerts
from broker.followup.duties import Duty, every, polling, run_duty
from broker.followup.tracking import RunTracker
from broker.matching.loaded import Contracts
from broker.matching.matcher import RecordOp, Refusal
from broker.runtime import Runtime
from broker.state.duties import DutyBeats
from broker.state.health import RedisHealth, is_down
from broker.state.ports import RecordOutcome, StreamEntry, TriggerRecord
from broker.state.reader import StreamReader
from broker.state.util import text
from broker.time.backfill import BackfillPump
from broker.time.deadlines import DeadlineClock

log = logging.getLogger("baton.worker")


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Worker:
    def __init__(
        self,
        runtime: Runtime,
        contracts: Contracts,
        targets: Mapping[str, Target],
        alerts: Alerts | None = None,
        owner_alerts: Mapping[str, Alerts] | None = None,
    ) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.contracts = contracts
        self.name = consumer_name()
        self._slots = asyncio.Semaphore(runtime.settings.worker.dispatch_concurrency)
        self._in_flight: set[asyncio.Task[str]] = set()
        # The consumer name claims deliver their trigger to ("" when not dispatching).
        self.deliver_to = ""
        # Late-bound on purpose: a reload swaps self.contracts as a whole.
        self.dispatcher = Dispatcher(
            self.store,
            lambda: self.contracts.by_name(),  # noqa: PLW0108
            targets,
            runtime.settings.retry,
            gates=Gates(self.store.gates, runtime.settings.targets),
            env=allowed_env(runtime.settings.contract_env, runtime.env),
        )
        settings = runtime.settings.worker
        self.tracker = RunTracker(
            self.store,
            lambda: self.contracts.by_name(),  # noqa: PLW0108
            targets,
            settings.track_initial,
            settings.track_max_delay,
            concurrency={n: t.track_concurrency for n, t in runtime.settings.targets.items()},
        )
        self.dispatcher.on_dispatched = self.tracker.wake
        self.alerter = Alerter(
            self.store, alerts, self.name, settings.claim_idle,
            lambda: self.contracts.by_name(),  # noqa: PLW0108
            owner_alerts,
        )  # fmt: skip
        self._next_trim = 0.0
        self._next_alert_reclaim = 0.0
        self.health = RedisHealth(runtime.redis, log, "the worker waits")
        self.pump = BackfillPump(
            self.store, self.store.backfills,
            lambda: self.contracts.by_name(),  # noqa: PLW0108
            lambda: self.contracts.version, self.name,
        )  # fmt: skip
        self.clock = DeadlineClock(
            self.store.deadlines,
            lambda: self.contracts.by_name(),  # noqa: PLW0108
            lambda: self.contracts.version,
        )

    # -- the two handlers, free of FastStream ------------------------------------
    async def process_events(
        self, entries: Sequence[StreamEntry], ack: bool = True
    ) -> list[RecordOutcome]:
        """Match a batch of event entries, record them atomically, then ack them (with
        `ack` False, entries no reader was handed yet: what a run produced, matched
        ahead of the stream, which hands them to a matcher later all the same)."""
        ops: list[RecordOp] = []
        refused: list[Refusal] = []
        matcher = self.contracts.matcher
        for entry_id, fields in entries:
            try:
                event, received_at = from_wire(fields["e"], entry_id)
            except (KeyError, ValueError) as exc:
                log.error("events entry %s is unreadable and is skipped: %s", entry_id, exc)
                continue
            plan = matcher.plan(event, received_at, entry_id)
            ops += plan.ops
            refused += plan.refused
            for reason in plan.skipped:
                log.info("event %s not matched: %s", event.event_id, reason)
        # Before the ack: a redelivered batch notes the same refusals again.
        await self.store.refusals.note(refused)
        ids = [entry_id for entry_id, _ in entries] if ack else []
        outcomes = await self.store.record(
            ops, self.contracts.version, ack=ids, deliver_to=self.deliver_to
        )
        for op, outcome in zip(ops, outcomes, strict=True):
            if outcome.trigger_id:
                log.debug("claimed trigger %s", outcome.trigger_id)
            if outcome.delivered_entry is not None:
                await self._start(self._delivered(op, outcome))
        await self.clock.recorded(ops, outcomes)
        return outcomes

    async def _delivered(self, op: RecordOp, outcome: RecordOutcome) -> str:
        """Dispatch the entry the claim delivered: our own trigger straight away (its
        attempt already counted), or an older one through the usual path."""
        entry, tid = outcome.delivered_entry, outcome.delivered_trigger
        assert entry is not None and tid is not None
        if not outcome.delivered_own:
            return await self.dispatcher.handle(entry, tid)
        record = TriggerRecord(
            id=tid, contract=op.contract, partition=op.partition,
            generation=outcome.generation, state="dispatching", attempts=1,
            created_at=outcome.at, updated_at=outcome.at, inputs={},
        )  # fmt: skip
        return await self.dispatcher.dispatch(entry, record, held=outcome.inputs or "{}")

    async def process_triggers(self, entries: Sequence[StreamEntry]) -> list[str]:
        """Dispatch a batch of claimed triggers, a bounded number at a time, and wait
        for all of them (the reclaim path)."""

        async def bounded(entry_id: str, fields: dict[str, str]) -> str:
            async with self._slots:
                return await self._dispatch_one(entry_id, fields)

        return list(await asyncio.gather(*(bounded(e, f) for e, f in entries)))

    async def start_triggers(self, entries: Sequence[StreamEntry]) -> None:
        """Hand each trigger to its own task as soon as a dispatch slot is free, and
        return once all have *started*: a slow target call never holds back the
        triggers read after it (the live path)."""
        for entry_id, fields in entries:
            await self._start(self.dispatcher.handle(entry_id, fields["t"]))

    async def _start(self, dispatch: Coroutine[Any, Any, str]) -> None:
        await self._slots.acquire()
        task = asyncio.create_task(self._guarded(dispatch, release=True))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _dispatch_one(self, entry_id: str, fields: dict[str, str]) -> str:
        return await self._guarded(self.dispatcher.handle(entry_id, fields["t"]))

    async def _guarded(self, dispatch: Coroutine[Any, Any, str], release: bool = False) -> str:
        """Each trigger acks itself; one that fails unexpectedly stays pending for the
        reclaim loop without holding back the others."""
        try:
            return await dispatch
        except Exception as exc:  # left pending: reclaimed after claim_idle
            if is_down(exc):
                self.health.lost(exc)
            else:
                log.exception("a dispatch failed; its entry stays pending and will be retried")
            return "pending"
        finally:
            if release:
                self._slots.release()

    # -- the two stream readers -----------------------------------------------------
    def readers(self, match: bool = True, dispatch: bool = True) -> list[StreamReader]:
        """The hot paths: events to matching, triggers to dispatch (see reader.py for
        why these are Baton's own loops and not FastStream subscribers)."""
        keys, read = self.store.keys, self.runtime.settings.worker.read_count
        out = []
        if match:
            out.append(StreamReader(self.runtime.redis, keys.events, keys.matchers_group,
                                    self.name, read, self.process_events, self.health))  # fmt: skip
        if dispatch:
            out.append(StreamReader(self.runtime.redis, keys.triggers, keys.dispatchers_group,
                                    self.name, read, self.start_triggers, self.health))  # fmt: skip
        return out

    # -- background loops -------------------------------------------------------------
    async def reclaim_events(self) -> int:
        """Take over and match event entries idle past `claim_idle`."""
        settings, keys = self.runtime.settings.worker, self.store.keys
        idle = int(settings.claim_idle.total_seconds() * 1000)
        entries = await self.store.reclaim(
            keys.events, keys.matchers_group, self.name, idle, settings.reclaim_count
        )
        if entries:
            log.warning("reclaimed %d idle event entries", len(entries))
            await self.process_events(entries)
        return len(entries)

    async def reclaim_triggers(self) -> int:
        """Take over and dispatch trigger entries idle past `claim_idle`."""
        settings, keys = self.runtime.settings.worker, self.store.keys
        idle = int(settings.claim_idle.total_seconds() * 1000)
        entries = await self.store.reclaim(
            keys.triggers, keys.dispatchers_group, self.name, idle, settings.reclaim_count
        )
        if entries:
            log.warning("reclaimed %d idle trigger entries", len(entries))
            await self.process_triggers(entries)
        return len(entries)

    async def _trim(self) -> None:
        """Keep `events_retention` of matched events for `baton replay`, and sweep a
        slice of the fired-markers and deadline alerts past `markers_retention`; once a
        minute."""
        now = asyncio.get_running_loop().time()
        if now < self._next_trim:
            return
        self._next_trim = now + 60
        keep = datetime.now(UTC) - self.runtime.settings.events_retention
        dropped = await self.store.trim_events(int(keep.timestamp() * 1000))
        if dropped:
            log.info("trimmed %d events older than %s from the stream", dropped, keep.isoformat())
        removed: Any = await self.runtime.redis.hkeys(self.store.keys.contracts_removed)
        names = {*self.contracts.by_name(), *(text(r) for r in removed)}
        swept = await self.store.sweeper.round(names, int(time.time() * 1000))
        if swept:
            log.info("swept %d fired-markers and deadline alerts past their retention", swept)

    def duties(self, match: bool = True, dispatch: bool = True) -> list[Duty]:
        """The background duties this worker runs, each in a loop of its own."""
        settings = self.runtime.settings.worker
        reclaim_every = max(0.2, settings.claim_idle.total_seconds() / 4)
        out: list[Duty] = []
        gates = self.dispatcher.gates
        if dispatch:
            for lane in self.tracker.lanes.values():
                out.append(Duty(lane.duty, partial(self.tracker.lane_round, lane),
                                lane.wake, drain=partial(self.tracker.drain, lane)))  # fmt: skip
            out += [
                Duty("retries", polling(self._move_retries)),
                Duty("gates", polling(gates.round, gates.watching)),
                Duty("alerts", polling(partial(self._alerts, reclaim_every))),
            ]
        if match:  # a deadline on the clock is looked at each BUSY_S; a backfill moves on
            clock, pump = self.clock, self.pump
            out += [Duty("deadlines", polling(clock.round, lambda: bool(clock.watched()))),
                    Duty("backfills", polling(pump.round, lambda: pump.running))]  # fmt: skip
        out.append(Duty("reclaim", every(reclaim_every, partial(self._reclaim, match, dispatch))))
        return out

    async def _alerts(self, reclaim_every: float) -> int:
        """New alerts each round; those another worker abandoned every `reclaim_every`."""
        now = asyncio.get_running_loop().time()
        reclaim = now >= self._next_alert_reclaim
        if reclaim:
            self._next_alert_reclaim = now + reclaim_every
        return await self.alerter.round(reclaim)

    async def _move_retries(self) -> int:
        return await self.store.move_due_retries(int(datetime.now(UTC).timestamp() * 1000))

    async def _reclaim(self, match: bool, dispatch: bool) -> None:
        if match:
            await self.reclaim_events()
            await self._trim()
        if dispatch:
            await self.reclaim_triggers()
            await self.dispatcher.expire_waiting()

    async def background(
        self, stop: asyncio.Event, match: bool = True, dispatch: bool = True
    ) -> None:
        """The background duties, until `stop` is set."""
        beats = DutyBeats(self.runtime.redis, self.store.keys, self.name)
        await asyncio.gather(
            *(run_duty(duty, stop, self.health, beats) for duty in self.duties(match, dispatch))
        )

    async def run(self, stop: asyncio.Event, match: bool = True, dispatch: bool = True) -> None:
        self.deliver_to = self.name if dispatch else ""
        if match:  # a chain's next step is matched here at once (see tracking.py)
            self.tracker.on_produced = partial(self.process_events, ack=False)
        await self.store.ensure_groups()
        readers = self.readers(match, dispatch)
        reading = [asyncio.create_task(r.run(stop)) for r in readers]
        log.info("worker %s consuming (contracts version %s)", self.name, self.contracts.version)
        try:
            await self.background(stop, match, dispatch)
        finally:
            await _stop_readers(readers, reading)
            self.health.close()
            if self._in_flight:  # let started dispatches record their outcome
                await asyncio.wait(self._in_flight, timeout=10)


async def _stop_readers(readers: list[StreamReader], tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the readers that wait for Redis; let one handling a batch finish it."""
    for reader, task in zip(readers, tasks, strict=True):
        if reader.reading:
            task.cancel()
    if not tasks:
        return
    done, pending = await asyncio.wait(tasks, timeout=10)
    for task in pending:
        task.cancel()
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            log.error("a stream reader stopped with an error", exc_info=task.exception())
