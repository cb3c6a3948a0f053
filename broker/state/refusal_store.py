"""Events a `where` filter refused, per contract partition and input: for `explain`.

Written by the matcher's worker before it acks the events (a redelivery rewrites the
same fields), read by `explain`. Only the latest refusal of each input is kept.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from broker.matching.matcher import Refusal
from broker.state.keys import Keys
from broker.state.util import text

# A week: long enough to answer "why did Monday not run?" on Friday.
REFUSALS_KEPT_S = 7 * 24 * 3600


class RefusalStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def note(self, refusals: Sequence[Refusal]) -> None:
        if not refusals:
            return
        pipe = self.redis.pipeline(transaction=False)
        for r in refusals:
            key = self.keys.refused(r.contract, r.partition)
            seen = {"event_id": r.event_id, "occurred_at": r.occurred_at, "where": r.where}
            pipe.hset(key, r.slot, json.dumps(seen, separators=(",", ":")))
            pipe.expire(key, REFUSALS_KEPT_S)
        await pipe.execute()

    async def of(self, contract: str, partition: str) -> dict[str, dict[str, Any]]:
        """slot -> {event_id, occurred_at, where} of the latest refused event."""
        raw: dict[Any, Any] = await self.redis.hgetall(self.keys.refused(contract, partition))
        return {text(slot): json.loads(value) for slot, value in raw.items()}
