"""Backfills in Redis: one hash each (plan, position, counts, what each partition
became), a set of its triggers whose runs have not finished, a trace of that number,
and a lease so one worker at a time moves a backfill on."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from redis.asyncio import Redis

from broker.matching.matcher import trigger_id_base
from broker.state.keys import Keys
from broker.state.util import script, text

TRACE_KEPT = 10_000


@dataclass(frozen=True, slots=True)
class Backfill:
    id: str
    contract: str
    start: str
    end: str
    order: str
    max_in_flight: int
    force: bool
    state: str  # running | done | cancelled
    created_at: str
    plan: list[str]
    pos: int = 0
    fired: int = 0
    skipped: int = 0
    finished_at: str = ""
    runs: dict[str, str] = field(default_factory=dict)  # partition -> trigger id
    skips: dict[str, str] = field(default_factory=dict)  # partition -> reason
    waiting: str = ""  # why it does not move on now (its contract is paused)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "contract": self.contract, "from": self.start, "to": self.end,
            "order": self.order, "max_in_flight": self.max_in_flight, "force": self.force,
            "state": self.state, "created_at": self.created_at,
            "finished_at": self.finished_at or None, "planned": len(self.plan),
            "done": self.pos, "fired": self.fired, "skipped": self.skipped,
            "runs": self.runs, "skips": self.skips, "waiting": self.waiting or None,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Step:
    """What the backfill script needs to fire (or skip) the partition at `pos`."""

    backfill: Backfill
    pos: int
    mode: str  # fire | rerun | skip
    slots: list[str]
    version: str
    now: datetime
    reason: str = ""


class BackfillStore:
    def __init__(self, redis: Redis, keys: Keys, history_ms: int = 0) -> None:
        self.redis = redis
        self.keys = keys
        self.history_ms = history_ms  # 0: kept for ever (a test's store)
        self._step = script(redis, "backfill", "kept", "claim")

    def _key(self, backfill_id: str) -> str:
        return self.keys.backfill(backfill_id)

    def _flight(self, backfill_id: str) -> str:
        return self.keys.backfill_flight(backfill_id)

    def _trace(self, backfill_id: str) -> str:
        return self.keys.backfill_trace(backfill_id)

    async def create(
        self, contract: str, start: str, end: str, order: str, max_in_flight: int,
        force: bool, plan: list[str], now: datetime,
    ) -> Backfill:  # fmt: skip
        backfill_id = f"bf-{uuid.uuid4().hex[:10]}"
        fields: Any = {
            "id": backfill_id, "contract": contract, "from": start, "to": end,
            "order": order, "max_in_flight": max_in_flight, "force": int(force),
            "state": "running" if plan else "done", "created_at": now.isoformat(),
            "plan": json.dumps(plan), "pos": 0, "fired": 0, "skipped": 0,
        }  # fmt: skip
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._key(backfill_id), mapping=fields)
            pipe.zadd(self._index, {backfill_id: now.timestamp()})
            if self.history_ms:  # the index lists what is kept
                pipe.zremrangebyscore(self._index, "-inf",
                                      now.timestamp() - self.history_ms / 1000)  # fmt: skip
                if not plan:  # nothing to do: done, and settled, at once
                    pipe.pexpire(self._key(backfill_id), self.history_ms)
            if plan:
                pipe.sadd(self._running, backfill_id)
            await pipe.execute()
        found = await self.get(backfill_id)
        assert found is not None
        return found

    @property
    def _index(self) -> str:
        return self.keys.backfills

    @property
    def _running(self) -> str:
        return self.keys.backfills_running

    async def get(self, backfill_id: str) -> Backfill | None:
        raw: Any = await self.redis.hgetall(self._key(backfill_id))
        if not raw:
            return None
        data = {text(k): text(v) for k, v in raw.items()}
        return Backfill(
            id=data["id"], contract=data["contract"], start=data["from"], end=data["to"],
            order=data["order"], max_in_flight=int(data["max_in_flight"]),
            force=data["force"] == "1", state=data["state"], created_at=data["created_at"],
            plan=json.loads(data["plan"]), pos=int(data["pos"]), fired=int(data["fired"]),
            skipped=int(data["skipped"]), finished_at=data.get("finished_at", ""),
            runs={k[4:]: v for k, v in data.items() if k.startswith("run:")},
            skips={k[5:]: v for k, v in data.items() if k.startswith("skip:")},
            waiting=data.get("waiting", ""),
        )  # fmt: skip

    async def recent(self, limit: int = 20) -> list[Backfill]:
        ids: Any = await self.redis.zrevrange(self._index, 0, limit - 1)
        found = [await self.get(text(i)) for i in ids]
        return [b for b in found if b is not None]

    async def running(self) -> list[Backfill]:
        ids: Any = await self.redis.smembers(self._running)
        found = [await self.get(text(i)) for i in sorted(ids)]
        return [b for b in found if b is not None and b.state == "running"]

    async def lease(self, backfill_id: str, owner: str, ms: int) -> bool:
        """Hold (or renew) the right to move this backfill on for `ms`."""
        key = self.keys.backfill_lease(backfill_id)
        if await self.redis.set(key, owner, nx=True, px=ms):
            return True
        held: Any = await self.redis.get(key)
        if held is not None and text(held) == owner:
            await self.redis.pexpire(key, ms)
            return True
        return False

    async def in_flight(self, backfill_id: str) -> list[str]:
        members: Any = await self.redis.smembers(self._flight(backfill_id))
        return sorted(text(m) for m in members)

    async def landed(self, backfill_id: str, trigger_ids: list[str]) -> None:
        if trigger_ids:
            await self.redis.srem(self._flight(backfill_id), *trigger_ids)

    async def trace(self, backfill_id: str, now: datetime, in_flight: int) -> None:
        key = self._trace(backfill_id)
        last: Any = await self.redis.lindex(key, -1)
        if last is not None and text(last).rsplit("|", 1)[1] == str(in_flight):
            return  # only changes are kept
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.rpush(key, f"{now.isoformat()}|{in_flight}")
            pipe.ltrim(key, -TRACE_KEPT, -1)
            await pipe.execute()

    async def read_trace(self, backfill_id: str) -> list[tuple[str, int]]:
        rows: Any = await self.redis.lrange(self._trace(backfill_id), 0, -1)
        out = []
        for row in rows:
            at, count = text(row).rsplit("|", 1)
            out.append((at, int(count)))
        return out

    async def finish(self, backfill_id: str, state: str, now: datetime) -> None:
        """Done or cancelled: settled, so its keys are kept for the history window."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._key(backfill_id),
                      mapping={"state": state, "finished_at": now.isoformat()})  # fmt: skip
            pipe.srem(self._running, backfill_id)
            if self.history_ms:
                for key in (self._key(backfill_id), self._flight(backfill_id),
                            self._trace(backfill_id)):  # fmt: skip
                    pipe.pexpire(key, self.history_ms)
            await pipe.execute()

    async def step(self, step: Step) -> tuple[str, str]:
        """Fire or skip the partition at `step.pos` and advance: ('fired', trigger id),
        ('skipped', reason), ('moved', '') when the position was not `pos`, or
        ('paused', '') while the contract is paused (the backfill waits)."""
        b = step.backfill
        partition = b.plan[step.pos]
        keys = [self._key(b.id), self.keys.partition(b.contract, partition), self.keys.triggers,
                self.keys.recent, self._flight(b.id), self.keys.stats,
                self.keys.paused, self.keys.fired(b.contract)]  # fmt: skip
        args: list[str | int] = [
            step.pos, partition, step.mode, json.dumps(step.slots),
            trigger_id_base(b.contract, partition), self.keys.trigger_prefix(), b.contract,
            step.version, step.now.isoformat(), int(step.now.timestamp() * 1000), step.reason,
            b.id, self.history_ms or "",
        ]  # fmt: skip
        verdict, detail = await self._step(keys=keys, args=args)
        return text(verdict), text(detail)
