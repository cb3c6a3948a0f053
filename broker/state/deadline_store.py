"""The deadline clock's state in Redis: a sorted set of watched (contract, partition)
members by deadline, the alerts sent, and a stream of alerts waiting to go out.

Every decision that must happen once (alert or not, recovered or not) is one Lua script,
so any number of workers can run the clock side by side.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis.asyncio import Redis

from broker.matching.matcher import trigger_id_base
from broker.state.keys import Keys
from broker.state.util import script, text

ALERTS_KEPT = 10_000


def member(contract: str, partition: str) -> str:
    """`contract|partition`: contract names never hold a `|`."""
    return f"{contract}|{partition}"


def split_member(value: str) -> tuple[str, str]:
    contract, _, partition = value.partition("|")
    return contract, partition


@dataclass(frozen=True, slots=True)
class Decision:
    """What the deadline script needs to decide one due member."""

    contract: str
    partition: str
    deadline: datetime
    now: datetime
    on_deadline: str  # alert | trigger
    slots: list[str]  # the condition's input slots, for a forced firing
    version: str  # the contract set's version, recorded on a forced trigger


@dataclass(frozen=True, slots=True)
class Due:
    contract: str
    partition: str
    score_ms: int


class DeadlineStore:
    def __init__(self, redis: Redis, keys: Keys, history_ms: int = 0) -> None:
        self.redis = redis
        self.keys = keys
        self.history_ms = history_ms  # 0: kept for ever (a test's store)
        self._decide = script(redis, "deadline", "kept", "claim")
        self._recovered = script(redis, "recovered")

    async def watch(self, items: Sequence[tuple[str, str, int]], *, update: bool = False) -> None:
        """Put (contract, partition, deadline ms) on the clock; a member already there
        keeps its time unless `update` (the contract's deadline changed)."""
        if not items:
            return
        mapping: dict[str, float] = {member(c, p): ms for c, p, ms in items}
        if update:
            await self.redis.zadd(self.keys.deadlines, mapping, xx=True)
        else:
            await self.redis.zadd(self.keys.deadlines, mapping, nx=True)

    async def drop(self, contract: str, partition: str) -> None:
        await self.redis.zrem(self.keys.deadlines, member(contract, partition))

    async def due(self, now_ms: int, limit: int = 100) -> list[Due]:
        rows: Any = await self.redis.zrangebyscore(
            self.keys.deadlines, "-inf", now_ms, start=0, num=limit, withscores=True
        )
        out = []
        for raw, score in rows:
            contract, partition = split_member(text(raw))
            out.append(Due(contract, partition, int(score)))
        return out

    async def decide(self, due: Decision) -> tuple[str, str]:
        """('alert', ''), ('forced', trigger id) with on_deadline: trigger, ('met', ''),
        ('already', '') or ('taken', '') by another worker."""
        c, p = due.contract, due.partition
        k = self.keys
        keys = [k.deadlines, k.partition(c, p), k.deadline_alerts, k.alerts, k.triggers,
                k.recent, k.stats, k.paused, k.fired(c)]  # fmt: skip
        args: list[str | int] = [
            member(c, p), c, p, due.deadline.isoformat(), due.now.isoformat(), ALERTS_KEPT,
            due.on_deadline, json.dumps(due.slots), trigger_id_base(c, p),
            self.keys.trigger_prefix(), due.version, int(due.now.timestamp() * 1000),
            self.history_ms or "",
        ]  # fmt: skip
        verdict, tid = await self._decide(keys=keys, args=args)
        return text(verdict), text(tid)

    async def recovered(
        self, contract: str, partition: str, trigger_id: str, now: datetime
    ) -> bool:
        """The partition fired: off the clock; a note is queued if its alert went out."""
        keys = [self.keys.deadlines, self.keys.deadline_alerts, self.keys.alerts]
        args: list[str | int] = [member(contract, partition), contract, partition, trigger_id,
                                 now.isoformat(), ALERTS_KEPT]  # fmt: skip
        return text(await self._recovered(keys=keys, args=args)) == "recovered"

    async def alert_of(self, contract: str, partition: str) -> dict[str, Any] | None:
        raw = await self.redis.hget(self.keys.deadline_alerts, member(contract, partition))
        return dict(json.loads(raw)) if raw else None

    async def cursors(self, contracts: Sequence[str] | None = None) -> dict[str, str]:
        """Contract -> the last partition put on the clock: of every contract, or of
        `contracts` only."""
        if contracts is None:
            raw = await self.redis.hgetall(self.keys.deadline_cursor)
            return {text(k): text(v) for k, v in raw.items()}
        if not contracts:
            return {}
        values: Any = await self.redis.hmget(self.keys.deadline_cursor, list(contracts))
        return {c: text(v) for c, v in zip(contracts, values, strict=True) if v is not None}

    async def set_cursors(self, cursors: Mapping[str, str]) -> None:
        """Contract -> the last partition put on the clock, for many at once."""
        if cursors:
            mapping: dict[str | bytes, str | bytes] = dict(cursors.items())
            await self.redis.hset(self.keys.deadline_cursor, mapping=mapping)  # type: ignore[arg-type]

    async def since(self, contracts: Sequence[str], now: datetime) -> dict[str, datetime]:
        """When the clock first watched each of `contracts` (now, the first time it is
        asked), in one round trip."""
        if not contracts:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for contract in contracts:
                pipe.hsetnx(self.keys.deadline_since, contract, now.isoformat())
            pipe.hmget(self.keys.deadline_since, list(contracts))
            replies: list[Any] = await pipe.execute()
        return {c: datetime.fromisoformat(text(raw)) if raw else now
                for c, raw in zip(contracts, replies[-1], strict=True)}  # fmt: skip

    async def alerts(self, limit: int = 100) -> list[dict[str, str]]:
        """The newest alerts first, as queued (sent or still waiting)."""
        rows: Any = await self.redis.xrevrange(self.keys.alerts, count=limit)
        return [
            {"id": text(entry_id)} | {text(k): text(v) for k, v in fields.items() if v}
            for entry_id, fields in rows
        ]
