"""Deadlines: when a contract partition should have fired, and the clock that alerts
when it has not. No sensor waits and no worker slot is held: a sorted set in Redis says
when to look, and one look decides.

`deadline:` is measured from the partition's end, in the contract's timezone:

    +7h30m      7 h 30 min after the partition ends
    09:00       the first 09:00 (local) at or after the partition's end
    +1d09:00    the first 09:00 at or after one day past the partition's end

Only time partitions (hourly, daily, weekly, monthly) have an end, so only they have
deadlines; `baton check` refuses a deadline on a static or unpartitioned contract.

Watched partitions (each put on the clock once, `ZADD NX`):
  - every partition from the moment the clock first saw the contract on, up to the one
    that holds "now" (a cursor per contract remembers how far it got, so partitions whose
    deadline passed while Baton was down are caught up on start);
  - any partition an input arrives for, so an input for a partition already past its
    deadline, with others still missing, alerts at once (unless the event says it
    re-publishes history: metadata `backfill: true`; `baton replay` watches nothing).
When a member is due, one worker takes it off the clock (Lua) and decides: fired in
time -> nothing; else one alert, ever, per (contract, partition), queued on the alerts
stream for the alerters group to send. A partition that fires after its alert sends
one "recovered" note. With `on_deadline: trigger` the same decision also fires the
partition with the inputs that are there (trigger templates read the missing ones as
`missing`); an input that arrives after that is recorded and fires nothing more.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING

from broker.contracts.model import DEADLINE, Contract, contract_calendar
from broker.core.durations import parse_duration
from broker.core.partitions import Calendar, PartitionError
from broker.matching.condition import build_tree, leaves
from broker.matching.matcher import RecordOp
from broker.state.deadline_store import Decision
from broker.state.ports import RecordOutcome

if TYPE_CHECKING:
    from broker.state.deadline_store import DeadlineStore

log = logging.getLogger("baton.deadlines")

# How many past partitions one contract may put on the clock in one catch-up.
CATCH_UP = 1000
SCHEDULE_CHUNK = 500  # contracts whose cursors move in one set of round trips


def watched(contract: Contract) -> bool:
    return contract.deadline is not None and contract_calendar(contract).is_time


def _carried(
    before: Mapping[str, Contract], was: Mapping[str, Contract], now: Mapping[str, Contract]
) -> dict[str, Contract]:
    """The watched contracts of the set `now`, from those (`was`) of the set `before`."""
    out = {name: c for name, c in was.items() if name in now}
    for name in [name for name, c in now.items() if before.get(name) is not c]:
        out.pop(name, None)
        if watched(now[name]):
            out[name] = now[name]
    return out


def deadline_at(contract: Contract, partition: str) -> datetime | None:
    """When `partition` of `contract` must have fired; None without a deadline."""
    if not watched(contract):
        return None
    assert contract.deadline is not None
    cal = contract_calendar(contract)
    end = cal.parse(partition).end
    assert end is not None
    return after(contract.deadline, end, cal.zone)


def after(spec: str, end: datetime, zone: tzinfo) -> datetime:
    """The deadline `spec` (+7h30m, 09:00, +1d09:00) counted from `end`."""
    found = DEADLINE.match(spec)
    if not found or not spec:
        raise ValueError(f"{spec!r} is not a deadline like +7h30m, 09:00 or +1d09:00")
    when = end + (parse_duration(found["rel"]) if found["rel"] else timedelta())
    if found["at"]:
        hour, minute = (int(x) for x in found["at"].split(":"))
        local = when.astimezone(zone)
        at = _wall(local.date(), time(hour, minute), zone)
        if at < when:
            at = _wall(local.date() + timedelta(days=1), time(hour, minute), zone)
        when = at
    return when.astimezone(UTC)


def _wall(day: date, at: time, zone: tzinfo) -> datetime:
    # Through UTC: a wall time skipped by a DST change becomes the real instant after it.
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def _ms(instant: datetime) -> int:
    return int(instant.timestamp() * 1000)


class DeadlineClock:
    """The worker's deadline clock; safe to run in every worker at once."""

    def __init__(
        self,
        store: DeadlineStore,
        contracts: Callable[[], Mapping[str, Contract]],
        version: Callable[[], str] = lambda: "",
    ) -> None:
        self.store = store
        self.contracts = contracts
        self.version = version
        self._source: Mapping[str, Contract] | None = None
        self._watched: dict[str, Contract] = {}
        # The set whose cursors all stood at their current partition, and the first
        # instant one of them moves on: until then a round has nothing to schedule.
        self._scheduled: Mapping[str, Contract] | None = None
        self._moves_at: datetime | None = None

    def watched(self) -> dict[str, Contract]:
        """The contracts with deadlines, worked out again only when the set is swapped."""
        source = self.contracts()
        if source is not self._source:
            before, self._source = self._source, source
            if before is None:
                self._watched = {name: c for name, c in source.items() if watched(c)}
            else:  # a contract object the sets share is unchanged: only the others are asked
                self._watched = _carried(before, self._watched, source)
        return self._watched

    async def round(self, now: datetime | None = None) -> int:
        """Watch new partitions, then decide every member that is due; returns how many
        alerts this worker queued."""
        now = now or datetime.now(UTC)
        contracts = self.watched()
        await self.schedule(contracts, now)
        return await self.fire_due(contracts, now)

    async def schedule(self, contracts: Mapping[str, Contract], now: datetime) -> None:
        """Put the partitions each contract reached since its cursor on the clock, then
        move the cursor: SCHEDULE_CHUNK contracts a few round trips at a time (at a new
        day, or after a start, every contract moves at once)."""
        if not contracts:
            return
        standing = self._scheduled if self._moves_at is not None and now < self._moves_at else None
        if contracts is standing:
            return  # a round every 0.2 s; over 100,000 contracts a pass costs ~0.5 s
        if standing is None:
            look: Mapping[str, Contract] = contracts
            cursors = await self.store.cursors()
        else:  # a new set: what it shares with the one whose cursors all stand is current
            look = {n: c for n, c in contracts.items() if standing.get(n) is not c}
            cursors = await self.store.cursors(list(look))
        currents: dict[Calendar, str] = {}  # a few calendars serve every contract
        behind = []
        for name, contract in look.items():
            cal = contract_calendar(contract)
            current = currents.get(cal)
            if current is None:
                current = currents[cal] = cal.key_of(now)
            last = cursors.get(name)
            if last != current:
                behind.append((name, contract, cal, _after(cal, last), current))
        for at in range(0, len(behind), SCHEDULE_CHUNK):
            chunk = behind[at : at + SCHEDULE_CHUNK]
            since = await self.store.since([n for n, _, _, start, _ in chunk if start is None],
                                           now)  # fmt: skip
            items, moved = [], {}
            for name, contract, cal, start, current in chunk:
                first = start if start is not None else cal.key_of(since[name])
                items += [(name, k, _ms(self._deadline(contract, k)))
                          for k in _up_to(cal, first, current)]  # fmt: skip
                moved[name] = current
            await self.store.watch(items)
            await self.store.set_cursors(moved)
        ends = [e for e in (cal.parse(key).end for cal, key in currents.items()) if e]
        if standing is not None and self._moves_at is not None:
            ends.append(self._moves_at)
        self._scheduled, self._moves_at = contracts, min(ends, default=None)

    async def fire_due(self, contracts: Mapping[str, Contract], now: datetime) -> int:
        queued = 0
        for due in await self.store.due(_ms(now)):
            contract = contracts.get(due.contract)
            if contract is None:  # removed, or its deadline was: off the clock
                await self.store.drop(due.contract, due.partition)
                continue
            try:
                deadline = self._deadline(contract, due.partition)
            except PartitionError:
                await self.store.drop(due.contract, due.partition)
                continue
            if _ms(deadline) > _ms(now):  # the deadline moved later: wait for it
                await self.store.watch([(due.contract, due.partition, _ms(deadline))], update=True)
                continue
            slots = list(leaves(build_tree(contract, due.partition)))
            decision = Decision(due.contract, due.partition, deadline, now,
                                contract.on_deadline, slots, self.version())  # fmt: skip
            verdict, trigger_id = await self.store.decide(decision)
            if verdict in ("alert", "forced"):
                queued += 1
                log.warning("%s [%s] missed its deadline %s%s", due.contract, due.partition,
                            deadline.isoformat(),
                            f"; started anyway as {trigger_id}" if trigger_id else "")  # fmt: skip
        return queued

    @staticmethod
    def _deadline(contract: Contract, partition: str) -> datetime:
        found = deadline_at(contract, partition)
        assert found is not None
        return found

    async def recorded(self, ops: Sequence[RecordOp], outcomes: Sequence[RecordOutcome]) -> None:
        """After a batch of inputs was recorded: watch their partitions, and take those
        that fired off the clock. Free when no contract has a deadline."""
        contracts = self.watched()
        if not contracts:
            return
        mine = [
            (op, out) for op, out in zip(ops, outcomes, strict=True) if op.contract in contracts
        ]
        if mine:
            await self._arrived(contracts, [op for op, _ in mine if not op.muted])
            await self._fired(contracts, mine)

    async def _arrived(self, contracts: Mapping[str, Contract], ops: Iterable[RecordOp]) -> None:
        """Watch the partitions these recorded inputs belong to (an input for a partition
        already past its deadline thus alerts on the next round)."""
        items = {}
        for op in ops:
            contract = contracts[op.contract]
            if op.partition:
                try:
                    items[(op.contract, op.partition)] = _ms(self._deadline(contract, op.partition))
                except PartitionError:
                    continue
        await self.store.watch([(c, p, ms) for (c, p), ms in items.items()])

    async def _fired(
        self, contracts: Mapping[str, Contract], recorded: Iterable[tuple[RecordOp, RecordOutcome]]
    ) -> None:
        """Partitions that fired leave the clock; a late one sends its recovered note."""
        now = datetime.now(UTC)
        for op, outcome in recorded:
            if outcome.outcome != "fired":
                continue
            assert outcome.trigger_id is not None
            if await self.store.recovered(op.contract, op.partition, outcome.trigger_id, now):
                log.info("%s [%s] recovered: %s fired after its deadline alert",
                         op.contract, op.partition, outcome.trigger_id)  # fmt: skip


def _after(cal: Calendar, last: str | None) -> str | None:
    """The partition after the cursor `last`; None to start from when the clock first
    watched the contract (no cursor, or the contract's partitioning changed)."""
    if last is None:
        return None
    try:
        return cal.shift(last, 1)
    except PartitionError:
        return None


def _up_to(cal: Calendar, start: str, current: str) -> list[str]:
    """The partitions from `start` up to `current`, the last CATCH_UP of them."""
    keys = [start]
    while keys[-1] != current and len(keys) <= 100 * CATCH_UP:
        keys.append(cal.shift(keys[-1], 1))
    return keys[-CATCH_UP:]
