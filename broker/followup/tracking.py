"""What happens after a dispatch: follow the run to its end, and publish what it made.

Each dispatched trigger sits in its target's tracking set (a sorted set by when its run
is next looked at). Each target is a lane of its own: a worker leases the due runs of
that target (so of several workers one looks at each), looks at up to the target's
`track_concurrency` of them at once, and records where each stands; an unfinished run is
looked at again after a growing pause (1 s, 2 s, 4 s, ... up to the configured cap). A
slow or hung orchestrator fills only its own lane: the other targets' runs, and the
worker's other duties, go on meanwhile.

A lane with nothing due sleeps until its next run is due, at most a second (another
worker may have dispatched meanwhile), and wakes at once when this worker dispatches to
its target: the first look at a webhook's run, which is done when answered, comes right
after the dispatch.

When a run succeeds, the contract's `produces` datasets are published for its
partition, with event ids made from the trigger id, so a repeated look publishes nothing
twice; that is how a chain crosses orchestrators. A worker that matches also matches
them at once (`on_produced`), so a chain's next step does not wait behind a backlog of
other events in the stream; the matchers read the same entries later, and recording an
event a partition already holds changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from broker.contracts.model import Contract
from broker.core.errors import BacklogFull, TargetRejected, TargetUnavailable
from broker.core.events import Event
from broker.core.settings import WebhookTarget
from broker.dispatch.target import RunStatus, Target
from broker.ingest.intake import ingest
from broker.state.duties import tracking_duty
from broker.state.health import is_down
from broker.state.ports import StreamEntry
from broker.state.redis_store import RedisStore

log = logging.getLogger("baton.followup")

# The longest a lane sleeps with nothing due: runs another worker dispatched are
# looked at within this.
IDLE_S = 1.0
# A target's `track_concurrency` when it sets none (and the old set's lane).
DEFAULT_CONCURRENCY: int = WebhookTarget.model_fields["track_concurrency"].default


def produced_event_id(trigger_id: str, dataset: str) -> str:
    return f"baton/{trigger_id}/{dataset}"


@dataclass
class Lane:
    """One target's runs: its tracking set, and the looks in flight at it."""

    target: str  # "" for runs dispatched before tracking was kept per target
    key: str
    limit: int
    looking: set[asyncio.Task[None]] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def duty(self) -> str:
        return tracking_duty(self.target)


class RunTracker:
    def __init__(
        self,
        store: RedisStore,
        contracts: Callable[[], Mapping[str, Contract]],
        targets: Mapping[str, Target],
        initial: timedelta,
        max_delay: timedelta,
        lease: timedelta = timedelta(seconds=60),
        concurrency: Mapping[str, int] | None = None,
    ) -> None:
        self.store = store
        self.contracts = contracts
        self.targets = targets
        self.initial = initial.total_seconds()
        self.max_delay = max_delay.total_seconds()
        self.lease_ms = int(lease.total_seconds() * 1000)
        limits = dict(concurrency or {})
        keys = store.keys
        self.lanes = {
            name: Lane(name, keys.tracking_of(name), limits.get(name, DEFAULT_CONCURRENCY))
            for name in targets
        }
        self.lanes[""] = Lane("", keys.tracking, DEFAULT_CONCURRENCY)
        # Given what a run produced, as events stream entries, to match them at once
        # (the worker's matcher), ahead of whatever backlog the stream holds.
        self.on_produced: Callable[[Sequence[StreamEntry]], Awaitable[object]] | None = None

    def wake(self, target: str) -> None:
        """A run of `target` was just dispatched here: look at it now."""
        lane = self.lanes.get(target)
        if lane is not None:
            lane.wake.set()

    async def lane_round(self, lane: Lane, now: datetime | None = None) -> float:
        """Start looks at as many of `lane`'s due runs as it has room for; returns how
        long until it has work again (0: at once)."""
        if len(lane.looking) >= lane.limit:
            await asyncio.wait(lane.looking, return_when=asyncio.FIRST_COMPLETED)
            return 0.0
        now_ms = int((now or datetime.now(UTC)).timestamp() * 1000)
        free = lane.limit - len(lane.looking)
        lane.wake.clear()
        due, head = await self.store.lease_tracked(lane.key, now_ms, self.lease_ms, free)
        for trigger_id in due:
            task = asyncio.create_task(self._guarded(lane, trigger_id, now_ms))
            lane.looking.add(task)
            task.add_done_callback(lane.looking.discard)
        if len(due) == free:
            return 0.0  # there may be more due
        if head is None:
            return IDLE_S
        return min(IDLE_S, max(0.0, (head - now_ms) / 1000))

    async def drain(self, lane: Lane, timeout: float = 10) -> None:
        """Let `lane`'s looks in flight record what they saw (at shutdown)."""
        if lane.looking:
            await asyncio.wait(lane.looking, timeout=timeout)

    async def _guarded(self, lane: Lane, trigger_id: str, now_ms: int) -> None:
        try:
            await self._look(lane, trigger_id, now_ms)
        except Exception as exc:  # one broken run must not stop the others
            if is_down(exc):  # Redis away: the lease runs out and the run is looked at again
                log.debug("following the run of %s waits for Redis", trigger_id)
                return
            log.exception("following the run of %s failed; trying again later", trigger_id)

    async def _look(self, lane: Lane, trigger_id: str, now_ms: int) -> None:
        record = await self.store.get_trigger(trigger_id)
        contract = self.contracts().get(record.contract) if record else None
        target = self.targets.get(contract.trigger.target) if contract else None
        # The run leaves its target's runs in flight when it ends (or cannot be followed).
        name = record.target if record else ""
        if record is None or contract is None or target is None:
            await self.store.run_seen(lane.key, trigger_id, "unknown",
                                      "contract or target gone", None, name)  # fmt: skip
            return
        try:
            status = await target.status(record.downstream_ref)
        except TargetUnavailable as exc:
            status = RunStatus(record.run_state or "queued", f"not reachable: {exc}")
        except TargetRejected as exc:
            await self.store.run_seen(lane.key, trigger_id, "unknown", str(exc), None, name)
            return
        published = status.state != "succeeded" or await self._publish_produces(
            contract, record.id, record.partition, status
        )
        if not published:
            status = RunStatus("running", "succeeded; publishing its outputs again later")
        if status.finished:
            await self.store.run_seen(lane.key, trigger_id, status.state, status.detail,
                                      None, name)  # fmt: skip
            log.info("run of %s %s (%s)", trigger_id, status.state, status.detail)
            return
        pause = min(self.max_delay, self.initial * 2**record.run_checks)
        await self.store.run_seen(lane.key, trigger_id, status.state, status.detail,
                                  now_ms + int(pause * 1000))  # fmt: skip

    async def _publish_produces(
        self, contract: Contract, trigger_id: str, partition: str, status: RunStatus
    ) -> bool:
        if not contract.produces:
            return True
        events = [
            Event(
                dataset=dataset,
                partition=partition or None,
                event_id=produced_event_id(trigger_id, dataset),
                producer=f"baton://{contract.name}",
                metadata={"trigger_id": trigger_id, "run": status.detail},
            )
            for dataset in contract.produces
        ]
        try:
            result = await ingest(self.store, events)
        except BacklogFull as exc:
            log.warning("cannot publish what %s produced yet: %s", trigger_id, exc)
            return False
        log.info("published %s for %s", ", ".join(contract.produces), trigger_id)
        if self.on_produced is not None and result.entries:
            try:
                await self.on_produced(result.entries)
            except Exception as exc:  # published all the same: the matchers read them
                log.warning("matching what %s produced at once failed (%s); the events "
                            "stream has it", trigger_id, exc)  # fmt: skip
        return True
