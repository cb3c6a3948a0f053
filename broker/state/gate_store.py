"""Redis side of the per-target gate: limits, waiting triggers, circuit breakers.

See admit.lua (may a trigger call its target now), release.lua (let waiting triggers
go, oldest first) and breaker.lua (what a call showed about the target).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from broker.state.keys import Keys
from broker.state.ports import Limits
from broker.state.util import script, text

# A probe whose worker died is given up after this long, and another one goes out.
PROBE_TIMEOUT_MS = 60_000


class GateStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._admit = script(redis, "admit")
        self._release = script(redis, "release")
        self._breaker = script(redis, "breaker")

    def _gate_keys(self, target: str) -> list[str]:
        k = self.keys
        return [k.target_running(target), k.target_waiting(target), k.target_rate(target),
                k.target_breaker(target)]  # fmt: skip

    async def admit(
        self, target: str, limits: Limits, trigger_id: str, created_ms: int, entry_id: str,
        now_ms: int,
    ) -> tuple[str, str]:  # fmt: skip
        """('go', 'admitted'|'probe') or ('wait', why)."""
        keys = [*self._gate_keys(target), self.keys.trigger(trigger_id), self.keys.triggers]
        args: list[str | int] = [trigger_id, now_ms, created_ms, limits.max_in_flight,
                                 limits.interval_ms, limits.burst, entry_id,
                                 self.keys.dispatchers_group, target, PROBE_TIMEOUT_MS]  # fmt: skip
        verdict, reason = await self._admit(keys=keys, args=args)
        return text(verdict), text(reason)

    async def release(self, target: str, limits: Limits, now_ms: int, count: int) -> list[str]:
        keys = [*self._gate_keys(target), self.keys.triggers]
        args: list[str | int] = [now_ms, limits.max_in_flight, limits.interval_ms,
                                 limits.burst, count, self.keys.trigger_prefix(),
                                 PROBE_TIMEOUT_MS]  # fmt: skip
        return [text(t) for t in await self._release(keys=keys, args=args)]

    async def outcome(
        self, target: str, answered: bool, now_ms: int, threshold: int, cooldown_ms: int,
        max_cooldown_ms: int, free: str = "",
    ) -> str:  # fmt: skip
        """The breaker's state after a call that `answered` (or failed transiently);
        `free` also frees that trigger's in-flight slot."""
        keys = [self.keys.target_breaker(target), self.keys.target_running(target)]
        args: list[str | int] = ["answered" if answered else "failed", now_ms, threshold,
                                 cooldown_ms, max_cooldown_ms, free]  # fmt: skip
        return text(await self._breaker(keys=keys, args=args))

    async def states(self, targets: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Each target's breaker state, runs in flight and triggers waiting."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for t in targets:
                pipe.hget(self.keys.target_breaker(t), "state")
                pipe.zcard(self.keys.target_running(t))
                pipe.zcard(self.keys.target_waiting(t))
            replies = await pipe.execute()
        out = {}
        for i, t in enumerate(targets):
            state, running, waiting = replies[3 * i : 3 * i + 3]
            out[t] = {"breaker": text(state) if state else "closed", "in_flight": int(running),
                      "waiting": int(waiting)}  # fmt: skip
        return out

    async def waiting_since(self, target: str, before_ms: int, count: int = 100) -> list[str]:
        """Trigger ids waiting for `target` created before `before_ms`, oldest first."""
        rows: Any = await self.redis.zrangebyscore(
            self.keys.target_waiting(target), "-inf", before_ms, start=0, num=count
        )
        return [text(r) for r in rows]

    async def forget(self, target: str, trigger_id: str) -> None:
        await self.redis.zrem(self.keys.target_waiting(target), trigger_id)
        await self.redis.zrem(self.keys.target_running(target), trigger_id)
