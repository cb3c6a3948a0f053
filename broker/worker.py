"""The worker: matches events into triggers and dispatches triggers to targets.

A composition root. Two FastStream consumer groups read the streams (`matchers` on
events, `dispatchers` on triggers) with manual acks; a reclaim loop takes over entries
a dead consumer left pending (FastStream's own reclaim reads one entry at a time and
never new ones), and a retry pump puts due retries back on the triggers stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from faststream.middlewares import AckPolicy
from faststream.redis import RedisBroker, StreamSub
from faststream.redis.annotations import RedisBatchStreamMessage

from broker.dispatch.dispatcher import Dispatcher
from broker.dispatch.target import Target
from broker.events import from_wire
from broker.matching.matcher import RecordOp
from broker.runtime import Contracts, Runtime
from broker.state.ports import RecordOutcome, StreamEntry

log = logging.getLogger("baton.worker")


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Worker:
    def __init__(
        self, runtime: Runtime, contracts: Contracts, targets: Mapping[str, Target]
    ) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.contracts = contracts
        self.name = consumer_name()
        self._dispatching = asyncio.Semaphore(runtime.settings.worker.dispatch_concurrency)
        # Late-bound on purpose: a reload swaps self.contracts as a whole.
        self.dispatcher = Dispatcher(
            self.store,
            lambda: self.contracts.by_name(),  # noqa: PLW0108
            targets,
            runtime.settings.retry,
        )

    # -- the two handlers, free of FastStream ------------------------------------
    async def process_events(self, entries: Sequence[StreamEntry]) -> list[RecordOutcome]:
        """Match a batch of event entries, record them atomically, then ack them."""
        ops: list[RecordOp] = []
        matcher = self.contracts.matcher
        for entry_id, fields in entries:
            try:
                event, received_at = from_wire(fields["e"])
            except (KeyError, ValueError) as exc:
                log.error("events entry %s is unreadable and is skipped: %s", entry_id, exc)
                continue
            plan = matcher.plan(event, received_at, entry_id)
            ops += plan.ops
            for reason in plan.skipped:
                log.info("event %s not matched: %s", event.event_id, reason)
        ids = [entry_id for entry_id, _ in entries]
        outcomes = await self.store.record(ops, self.contracts.version, ack=ids)
        for outcome in outcomes:
            if outcome.trigger_id:
                log.info("claimed trigger %s", outcome.trigger_id)
        return outcomes

    async def process_triggers(self, entries: Sequence[StreamEntry]) -> list[str]:
        """Dispatch a batch of claimed triggers, a bounded number at a time; each acks
        itself, and one that fails unexpectedly stays pending for the reclaim loop
        without holding back the others."""
        return list(await asyncio.gather(*(self._dispatch_one(e, f) for e, f in entries)))

    async def _dispatch_one(self, entry_id: str, fields: dict[str, str]) -> str:
        async with self._dispatching:
            try:
                return await self.dispatcher.handle(entry_id, fields["t"])
            except Exception:  # left pending: reclaimed after claim_idle
                log.exception("dispatching entry %s failed; it will be retried", entry_id)
                return "pending"

    # -- FastStream wiring ----------------------------------------------------------
    def build_broker(self, match: bool = True, dispatch: bool = True) -> RedisBroker:
        broker = RedisBroker(self.runtime.url, logger=log, graceful_timeout=10)
        read = self.runtime.settings.worker.read_count

        if match:
            self._subscribe_events(broker, read)
        if dispatch:
            self._subscribe_triggers(broker, read)
        return broker

    def _subscribe_events(self, broker: RedisBroker, read: int) -> None:
        keys = self.store.keys

        @broker.subscriber(
            stream=StreamSub(
                keys.events, group=keys.matchers_group, consumer=self.name,
                batch=True, max_records=read, polling_interval=1000,
            ),
            ack_policy=AckPolicy.MANUAL,
        )  # fmt: skip
        async def on_events(msg: RedisBatchStreamMessage) -> None:
            await self.process_events(_entries(msg))

    def _subscribe_triggers(self, broker: RedisBroker, read: int) -> None:
        keys = self.store.keys

        @broker.subscriber(
            stream=StreamSub(
                keys.triggers, group=keys.dispatchers_group, consumer=self.name,
                batch=True, max_records=read, polling_interval=1000,
            ),
            ack_policy=AckPolicy.MANUAL,
        )  # fmt: skip
        async def on_triggers(msg: RedisBatchStreamMessage) -> None:
            await self.process_triggers(_entries(msg))

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

    async def _round(self, match: bool, dispatch: bool, reclaim: bool) -> None:
        if dispatch:
            await self.store.move_due_retries(int(datetime.now(UTC).timestamp() * 1000))
        if reclaim and match:
            await self.reclaim_events()
        if reclaim and dispatch:
            await self.reclaim_triggers()

    async def background(
        self, stop: asyncio.Event, match: bool = True, dispatch: bool = True
    ) -> None:
        """Reclaim and retry loops until `stop` is set."""
        period = max(0.2, self.runtime.settings.worker.claim_idle.total_seconds() / 4)
        next_reclaim = 0.0
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            reclaim = loop.time() >= next_reclaim
            try:
                await self._round(match, dispatch, reclaim)
                if reclaim:
                    next_reclaim = loop.time() + period
            except Exception:  # a broken round must not end the loop
                log.exception("background round failed; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.2)

    async def run(self, stop: asyncio.Event, match: bool = True, dispatch: bool = True) -> None:
        broker = self.build_broker(match, dispatch)
        await broker.start()
        log.info("worker %s consuming (contracts version %s)", self.name, self.contracts.version)
        try:
            await self.background(stop, match, dispatch)
        finally:
            await broker.stop()


def _entries(msg: RedisBatchStreamMessage) -> list[StreamEntry]:
    raw: Any = msg.raw_message
    ids = [_text(i) for i in raw["message_ids"]]
    return [
        (entry_id, {_text(k): _text(v) for k, v in data.items()})
        for entry_id, data in zip(ids, raw["data"], strict=True)
    ]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
