"""Pausing a contract: inputs are still recorded, nothing fires, until it is resumed.

Paused contracts are a hash in Redis (`<ns>:paused`), read by every script that fires
a partition (live matching, deadlines with `on_deadline: trigger`, backfills) in the
same step as the decision, so no firing slips past a pause. While paused:

  an input completes a partition    -> recorded; the partition waits
  a deadline passes                 -> the alert is sent as usual; nothing is forced
  a backfill reaches the contract   -> it waits where it is
  triggers made before the pause    -> dispatched as usual (they were decided)

On resume (default `fire=True`) the partitions that completed meanwhile fire once,
each with its usual deterministic trigger id; with `fire=False` they are marked done
without firing (a later restatement fires its next generation, and `baton backfill
--force` can still run one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from broker.contracts.model import Contract
from broker.control.live import LiveState, reevaluate_waiting
from broker.matching.matcher import Matcher
from broker.state.redis_store import RedisStore
from broker.state.util import text


@dataclass(frozen=True, slots=True)
class Resumed:
    contract: str
    fired: list[tuple[str, str]]  # (partition, trigger id) fired on resume
    skipped: list[str]  # partitions marked done unfired (fire=False)
    was_paused: bool

    def as_dict(self) -> dict[str, Any]:
        return {"contract": self.contract, "was_paused": self.was_paused,
                "fired": [{"partition": p, "trigger_id": t} for p, t in self.fired],
                "skipped": self.skipped}  # fmt: skip


async def pause(store: RedisStore, name: str, actor: str, reason: str = "") -> dict[str, str]:
    """Pause `name` (pausing it again changes nothing); returns the pause record."""
    record = {"by": actor, "at": datetime.now(UTC).isoformat(), "reason": reason}
    await store.redis.hsetnx(store.keys.paused, name, json.dumps(record))
    raw = await store.redis.hget(store.keys.paused, name)
    stored: dict[str, str] = json.loads(raw) if raw else record
    return stored


async def paused(store: RedisStore) -> dict[str, dict[str, str]]:
    """Every paused contract -> who paused it, when, and why."""
    raw: Any = await store.redis.hgetall(store.keys.paused)
    return {text(k): json.loads(v) for k, v in raw.items()}


async def resume(
    store: RedisStore, contract: Contract, matcher: Matcher, version: str, fire: bool = True
) -> Resumed:
    """Resume `contract`, then evaluate its waiting partitions: what completed while it
    was paused fires once (or, `fire=False`, is marked done unfired)."""
    was = bool(await store.redis.hdel(store.keys.paused, contract.name))
    held = (await LiveState(store).held([contract.name]))[contract.name]
    waiting = [h for h in held if h.waiting(contract.partitioned != "none")]
    done = await reevaluate_waiting(store, contract, matcher, waiting, version, skip=not fire)
    fired = [(p, t) for p, t in done if t]
    skipped = [p for p, t in done if not t]
    return Resumed(contract.name, fired, skipped, was)
