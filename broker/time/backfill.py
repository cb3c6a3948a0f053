"""Backfills: redo a range of a contract's partitions on purpose, a few runs at a time.

    baton backfill revenue_report --from 2026-10-01 --to 2026-10-30 --max-in-flight 3

The plan is every partition from `--from` to `--to`, newest first by default (recent
data matters most) or oldest first. A worker moves the backfill on: while fewer than
`max_in_flight` of its downstream runs are unfinished (a run counts until the target
says it ended; a webhook ends when answered), it takes the next partition of the plan:

  - already fired (live, or by an earlier backfill)  -> skipped, named in the status
  - inputs not all complete                          -> skipped, naming what is missing
  - otherwise                                        -> fired, with the same deterministic
                                                        trigger id live matching uses

`--force` fires every planned partition: incomplete ones with what is there (templates
read `missing`), and ones that already ran as their next generation (a rerun, with a
new deterministic id). Each fire-and-advance is one Lua script, so a backfill that is
interrupted (a worker killed, Baton restarted) continues where it stopped and never
fires a partition twice. One worker at a time moves a backfill (a lease in Redis).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from broker.contracts.model import Contract, contract_calendar
from broker.core.errors import BatonError
from broker.core.partitions import Calendar, Granularity, PartitionError
from broker.matching.condition import build_tree, holds, leaves, readable_slot
from broker.state.backfill_store import Backfill, BackfillStore, Step
from broker.state.redis_store import RedisStore

log = logging.getLogger("baton.backfill")

MAX_PLAN = 10_000
FINISHED = ("succeeded", "failed", "unknown")


class BackfillRejected(BatonError):
    """A backfill that cannot be planned: unknown contract, bad range, ..."""


def plan(contract: Contract, start: str, end: str, order: str = "newest-first") -> list[str]:
    """The partitions from `start` to `end`, both included, in the order asked for."""
    if order not in ("newest-first", "oldest-first"):
        raise BackfillRejected(f"order must be newest-first or oldest-first, not {order!r}")
    cal = contract_calendar(contract)
    if contract.partitioned == Granularity.STATIC:
        known = list(contract.partitions or ())
        if start not in known or end not in known:
            raise BackfillRejected(f"{contract.name} lists its partitions: {known}")
        keys = known[known.index(start) : known.index(end) + 1]
    elif cal.is_time:
        keys = _time_range(cal, contract.name, start, end)
    else:
        raise BackfillRejected(f"{contract.name} is unpartitioned: there is nothing to backfill")
    if not keys:
        raise BackfillRejected(f"--from {start} comes after --to {end}")
    return keys[::-1] if order == "newest-first" else keys


def _time_range(cal: Calendar, name: str, start: str, end: str) -> list[str]:
    try:
        first, last = cal.parse(start), cal.parse(end)
    except PartitionError as exc:
        raise BackfillRejected(f"{name} is partitioned {cal.granularity}: {exc}") from exc
    assert first.start is not None and last.end is not None
    keys = cal.keys_between(first.start, last.end) if first.start < last.end else []
    if len(keys) > MAX_PLAN:
        raise BackfillRejected(f"{len(keys)} partitions; at most {MAX_PLAN} in one backfill")
    return keys


@dataclass(frozen=True, slots=True)
class Readiness:
    partition: str
    ready: bool
    missing: list[str] = field(default_factory=list)
    ran_as: str | None = None

    def why_skipped(self) -> str:
        if self.ran_as:
            return f"already ran as {self.ran_as}"
        return f"not ready: missing {', '.join(self.missing)}"

    def action(self, force: bool) -> str:
        if self.ran_as:
            return "rerun" if force else "skip"
        return "fire" if self.ready or force else "skip"


async def readiness(
    store: RedisStore, contract: Contract, partitions: list[str]
) -> list[Readiness]:
    """What each partition would do now: for `--dry-run`, and for the pump."""
    out = []
    for partition in partitions:
        state = await store.read_partition(contract.name, partition)
        tree = build_tree(contract, partition)
        present = set(state.successes)
        missing = [readable_slot(s) for s in leaves(tree) if s not in present]
        ran = state.trigger_id if state.fired >= 0 else None
        out.append(Readiness(partition, holds(tree, present), missing, ran))
    return out


class BackfillPump:
    """Moves running backfills on; runs in every worker, one at a time per backfill."""

    def __init__(
        self,
        store: RedisStore,
        backfills: BackfillStore,
        contracts: Callable[[], Mapping[str, Contract]],
        version: Callable[[], str],
        owner: str,
        lease_ms: int = 10_000,
    ) -> None:
        self.store = store
        self.backfills = backfills
        self.contracts = contracts
        self.version = version
        self.owner = owner
        self.lease_ms = lease_ms
        self.running = False  # whether the last round found a backfill running

    async def round(self) -> int:
        """One pass over the running backfills; returns how many partitions it fired."""
        fired = 0
        running = await self.backfills.running()
        self.running = bool(running)
        for backfill in running:
            if await self.backfills.lease(backfill.id, self.owner, self.lease_ms):
                try:
                    fired += await self._move(backfill)
                except Exception:  # one broken backfill must not stop the others
                    log.exception("backfill %s could not move on; trying again", backfill.id)
        return fired

    async def _move(self, backfill: Backfill) -> int:
        contract = self.contracts().get(backfill.contract)
        now = datetime.now(UTC)
        if contract is None:
            log.error("backfill %s: contract %s is gone; cancelled", backfill.id, backfill.contract)
            await self.backfills.finish(backfill.id, "cancelled", now)
            return 0
        flight = await self._unfinished(backfill.id)
        fired, pos = 0, backfill.pos
        while len(flight) < backfill.max_in_flight and pos < len(backfill.plan):
            partition = backfill.plan[pos]
            [ready] = await readiness(self.store, contract, [partition])
            mode = ready.action(backfill.force)
            reason = ready.why_skipped() if mode == "skip" else ""
            step = Step(backfill, pos, mode, list(leaves(build_tree(contract, partition))),
                        self.version(), now, reason)  # fmt: skip
            verdict, detail = await self.backfills.step(step)
            if verdict in ("moved", "paused"):  # another worker's step landed first: read
                return fired  # again; or paused: wait where it is
            pos += 1
            if verdict == "fired":
                fired += 1
                flight.append(detail)
                log.info("backfill %s: %s fired as %s", backfill.id, partition, detail)
        await self.backfills.trace(backfill.id, now, len(flight))
        if pos >= len(backfill.plan) and not flight:
            await self.backfills.finish(backfill.id, "done", now)
            log.info("backfill %s done", backfill.id)
        return fired

    async def _unfinished(self, backfill_id: str) -> list[str]:
        """Its triggers whose runs have not ended (a dead letter has ended too)."""
        flight: list[str] = []
        landed: list[str] = []
        for trigger_id in await self.backfills.in_flight(backfill_id):
            record = await self.store.get_trigger(trigger_id)
            ended = record is None or record.state == "failed" or record.run_state in FINISHED
            (landed if ended else flight).append(trigger_id)
        await self.backfills.landed(backfill_id, landed)
        return flight


async def submit(
    store: RedisStore, contract: Contract, start: str, end: str, *, order: str = "newest-first",
    max_in_flight: int = 4, force: bool = False,
) -> Backfill:  # fmt: skip
    """Plan and record a backfill; the workers carry it out."""
    if max_in_flight < 1:
        raise BackfillRejected("max_in_flight must be at least 1")
    keys = plan(contract, start, end, order)
    return await store.backfills.create(
        contract.name, start, end, order, max_in_flight, force, keys, datetime.now(UTC)
    )


async def dry_run(
    store: RedisStore, contract: Contract, start: str, end: str, *, order: str = "newest-first",
    force: bool = False,
) -> list[dict[str, Any]]:  # fmt: skip
    """The plan with what each partition would do now; nothing is written."""
    keys = plan(contract, start, end, order)
    return [
        {"partition": r.partition, "action": r.action(force), "ready": r.ready,
         "missing": r.missing, "ran_as": r.ran_as}
        for r in await readiness(store, contract, keys)
    ]  # fmt: skip


async def status(store: RedisStore, backfill: Backfill) -> dict[str, Any]:
    trace = await store.backfills.read_trace(backfill.id)
    flight = await store.backfills.in_flight(backfill.id)
    return backfill.as_dict() | {
        "in_flight": flight,
        "in_flight_trace": [{"at": at, "in_flight": n} for at, n in trace],
    }
