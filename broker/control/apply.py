"""Bring the live state in line with a newly loaded contract set.

The rules, applied by the worker when it loads a set that differs from the last one
applied (at a reload or at start, so a change made while Baton was down counts too):

  condition / within changed -> every waiting partition (not fired in its generation)
      is evaluated again with the inputs already recorded; one that now holds fires
      once. A partition that fired is not fired again: a new definition is not a
      restatement (`baton backfill --force` reruns one on purpose).
  partitioning / timezone changed -> the events recorded for waiting partitions are
      matched again against the new partitioning, and what holds fires once; old
      partitions whose keys no longer fit are kept for `contracts_retention`.
  deadline changed -> watched partitions move to the new deadline; one past it that
      has not fired alerts on the next round (once per partition, as ever).
  trigger changed -> later firings use it; nothing else moves.
  removed -> it stops matching and firing; its partition state expires after
      `contracts_retention`. Added back within that time, it resumes from that state.

`baton diff` previews the same rules over the same state (broker/control/preview.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from broker.contracts.model import Contract, contract_calendar
from broker.control.changes import REEVALUATE, ContractChange, digests, since_applied
from broker.control.live import Held, LiveState, deadline_ms, reevaluate_waiting
from broker.core.partitions import PartitionError
from broker.matching.matcher import Matcher
from broker.state.deadline_store import member
from broker.state.redis_store import RedisStore
from broker.state.util import text

if TYPE_CHECKING:
    from broker.matching.loaded import Contracts

log = logging.getLogger("baton.changes")


@dataclass(slots=True)
class Applied:
    changes: list[ContractChange]
    fired: list[str] = field(default_factory=list)  # trigger ids fired by re-evaluation


@dataclass(frozen=True, slots=True)
class _Recorded:
    """The set this process last recorded as applied: while `contracts:defs` still holds
    its `version`, those definitions are these digests, and a contract object the next
    set shares with it (an unchanged file loads to the same object) has not changed."""

    version: str
    contracts: Mapping[str, Contract]
    digests: dict[str, dict[str, str]]


class ChangeApplier:
    """Brings the live state in line with a newly loaded contract set (the rules above)."""

    def __init__(self, store: RedisStore, retention: timedelta) -> None:
        self.store = store
        self.state = LiveState(store)
        self.retention = retention
        self._recorded: _Recorded | None = None

    async def apply(
        self, contracts: Mapping[str, Contract], matcher: Matcher, version: str,
        content: str = "",
    ) -> Applied | None:  # fmt: skip
        """Apply what changed since the last set applied; None when another process is
        applying right now (it applies the same rules to the same state). With the
        `content` hash of the files, a set recorded as applied with the same one is
        known to be unchanged without comparing each definition (a restart)."""
        redis = self.store.redis
        if not await redis.set(self.state.lock_key, version, nx=True, px=120_000):
            return None
        try:
            return await self._apply(contracts, matcher, f"{version} {content}".strip())
        finally:
            await redis.delete(self.state.lock_key)

    async def _apply(
        self, contracts: Mapping[str, Contract], matcher: Matcher, version: str
    ) -> Applied:
        applied, fresh = await self._compared(contracts, version)
        changes = since_applied(applied, fresh)
        result = Applied(changes)
        if not changes:
            await self._record_applied(changes, fresh, contracts, version)
            return result
        removed = await self.state.removed()
        added = [c.name for c in changes if c.change == "added"]
        returning = [n for n in added if n in removed]
        touched = [c.name for c in changes if c.change == "removed"] + returning
        touched += [c.name for c in changes if REEVALUATE & set(c.aspects)]
        held = await self.state.held(touched)
        now = datetime.now(UTC)
        for change in changes:
            name = change.name
            if change.change == "removed":
                await self._remove(name, held[name], version, now)
            elif change.change == "added" and name in removed:
                await self._resume(name, held[name])
            elif change.change == "changed":
                contract = contracts[name]
                if REEVALUATE & set(change.aspects):
                    result.fired += await self._reevaluate(contract, matcher, held[name], version)
                if {"deadline", "partitioning"} & set(change.aspects):
                    await self._reclock(contract)
        await self._record_applied(changes, fresh, contracts, version)
        return result

    async def _compared(
        self, contracts: Mapping[str, Contract], version: str
    ) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
        """(applied, fresh) digests of the contracts that may have changed: none when
        the definitions recorded are of this very content (`version` names it: a
        restart); else every one, unless they are this process's last set, when only
        those whose object is not that set's (one changed file of 100,000: 4 s -> ms)."""
        last = self._recorded
        recorded = await self.store.redis.get(self.state.defs_version_key)
        if last is None and " " in version and recorded is not None and text(recorded) == version:
            return {}, {}  # each one's digest is read from `contracts:defs` when it moves
        if last is not None and recorded is not None and text(recorded) == last.version:
            moved = [n for n, c in contracts.items() if last.contracts.get(n) is not c]
            moved += [n for n in last.contracts if n not in contracts]
            applied = {n: last.digests[n] for n in moved if n in last.digests}
            applied |= await self.state.applied_of([n for n in moved if n not in applied])
            return applied, {n: digests(contracts[n]) for n in moved if n in contracts}

        def every() -> dict[str, dict[str, str]]:  # ~40 us a contract: off the event loop
            known = last.contracts if last is not None else {}
            kept = last.digests if last is not None else {}
            return {n: kept[n] if n in kept and known.get(n) is c else digests(c)
                    for n, c in contracts.items()}  # fmt: skip

        fresh = await asyncio.to_thread(every)
        return await self.state.applied(), fresh

    async def _record_applied(
        self, changes: list[ContractChange], fresh: Mapping[str, dict[str, str]],
        contracts: Mapping[str, Contract], version: str,
    ) -> None:  # fmt: skip
        """Write what changed into `contracts:defs`, which then holds `version`'s
        definitions (`fresh` has at least each changed one's)."""
        gone = [c.name for c in changes if c.change == "removed"]
        updates = {c.name: json.dumps(fresh[c.name]) for c in changes if c.name in fresh}
        async with redis_pipeline(self.store) as pipe:
            if gone:
                pipe.hdel(self.state.defs_key, *gone)
            if updates:
                pipe.hset(self.state.defs_key, mapping=updates)
            pipe.set(self.state.defs_version_key, version)
            await pipe.execute()
        last = self._recorded
        known = dict(last.digests) if last is not None else {}
        known.update(fresh)
        for name in gone:
            known.pop(name, None)
        self._recorded = _Recorded(version, contracts, known)

    async def _remove(self, name: str, held: list[Held], version: str, now: datetime) -> None:
        """Stop a contract: its state expires after the retention period, not at once."""
        seconds = int(self.retention.total_seconds())
        record = {"removed_at": now.isoformat(), "version": version,
                  "kept_until": (now + self.retention).isoformat()}  # fmt: skip
        keys = self.store.keys
        async with redis_pipeline(self.store) as pipe:
            for h in held:
                pipe.expire(h.key, seconds)
            pipe.hset(self.state.removed_key, name, json.dumps(record))
            # Added back later, its clock starts afresh instead of alerting for the gap.
            pipe.hdel(keys.deadline_cursor, name)
            pipe.hdel(keys.deadline_since, name)
            await pipe.execute()
        waiting = sum(1 for h in held if h.waiting(True))
        log.warning("contract %s removed: %d partitions (%d waiting) kept until %s",
                    name, len(held), waiting, record["kept_until"])  # fmt: skip

    async def _resume(self, name: str, held: list[Held]) -> None:
        history = self.store.history_ms
        async with redis_pipeline(self.store) as pipe:
            for h in held:  # live again: kept for the history window, as any partition
                if history:
                    pipe.pexpire(h.key, history)
                else:
                    pipe.persist(h.key)
            pipe.hdel(self.state.removed_key, name)
            await pipe.execute()
        log.info("contract %s is back: resumes %d kept partitions", name, len(held))

    async def _reevaluate(
        self, contract: Contract, matcher: Matcher, held: list[Held], version: str
    ) -> list[str]:
        waiting = [h for h in held if h.waiting(contract.partitioned != "none")]
        done = await reevaluate_waiting(self.store, contract, matcher, waiting, version)
        fired = [trigger_id for _, trigger_id in done]
        # Partitions the new partitioning has no place for: kept for the retention period.
        cal = contract_calendar(contract)
        stale = []
        for h in held:
            try:
                cal.parse(h.partition)
            except PartitionError:
                stale.append(h.key)
        if stale:
            async with redis_pipeline(self.store) as pipe:
                for key in stale:
                    pipe.expire(key, int(self.retention.total_seconds()))
                await pipe.execute()
        log.info("contract %s changed: %d waiting partitions evaluated again, %d fired",
                 contract.name, len(waiting), len(fired))  # fmt: skip
        return fired

    async def _reclock(self, contract: Contract) -> None:
        """Move the contract's watched partitions to its new deadline (or off the clock)."""
        on_clock = await self.state.clock(contract.name)
        keep: dict[str, float] = {}
        drop = []
        for partition in on_clock:
            ms = deadline_ms(contract, partition)
            if ms is None:
                drop.append(member(contract.name, partition))
            else:
                keep[member(contract.name, partition)] = ms
        deadlines = self.store.keys.deadlines
        async with redis_pipeline(self.store) as pipe:
            if keep:
                pipe.zadd(deadlines, keep, xx=True)
            if drop:
                pipe.zrem(deadlines, *drop)
            await pipe.execute()


def redis_pipeline(store: RedisStore) -> Any:
    return store.redis.pipeline(transaction=False)


async def apply_changes(applier: ChangeApplier, contracts: Contracts) -> None:
    """Apply a loaded set to the live state; a failure is logged, and the same changes are
    applied again at the next start or reload."""
    try:
        await applier.apply(
            contracts.by_name(),
            contracts.matcher,
            contracts.version,
            contracts.contract_set.content,
        )
    except Exception:
        log.exception("contract changes of %s not applied yet; the next start or reload "
                      "applies them", contracts.version)  # fmt: skip
