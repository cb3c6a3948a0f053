"""Sweeping what has a retention but no expiry of its own: hash fields.

Redis expires keys, not the fields of a hash (before 7.4). Two hashes hold one field
per partition and would grow for ever:

- each contract's fired-markers (`Keys.fired`): a marker older than
  `markers_retention` goes;
- the deadline alerts sent (`Keys.deadline_alerts`): one older than that too.

A sweep walks them with HSCAN, a slice per round (`CALLS_PER_ROUND` calls, so a round
costs the same at any size), and drops a field only if it still holds what was read:
one written since the read is new (sweep.lua).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from redis.asyncio import Redis

from broker.state.keys import Keys
from broker.state.util import script, text

CALLS_PER_ROUND = 100
SCAN_COUNT = 500


class Sweeper:
    def __init__(self, redis: Redis, keys: Keys, kept_ms: int) -> None:
        self.redis = redis
        self.keys = keys
        self.kept_ms = kept_ms
        self._sweep = script(redis, "sweep")
        self._queue: deque[str] = deque()
        self._cursors: dict[str, int] = {}

    async def round(self, contracts: Iterable[str], now_ms: int) -> int:
        """One slice of the sweep; a pass over every hash starts when the last ended.
        Returns how many fields were dropped."""
        if self.kept_ms <= 0:
            return 0
        if not self._queue:
            self._queue.extend([*(self.keys.fired(c) for c in sorted(contracts)),
                                self.keys.deadline_alerts])  # fmt: skip
        cutoff, dropped = now_ms - self.kept_ms, 0
        for _ in range(CALLS_PER_ROUND):
            if not self._queue:
                break
            key = self._queue[0]
            reply: Any = await self.redis.hscan(key, self._cursors.get(key, 0), count=SCAN_COUNT)
            cursor, fields = reply
            old = [item for f, v in fields.items() if _written_ms(text(v)) < cutoff
                   for item in (f, v)]  # fmt: skip
            if old:
                dropped += int(await self._sweep(keys=[key], args=old))
            if cursor == 0:
                self._queue.popleft()
                self._cursors.pop(key, None)
            else:
                self._cursors[key] = int(cursor)
        return dropped


def _written_ms(value: str) -> float:
    """When a marker (`<gen>:<ms>`) or an alert (JSON with `alerted_at`) was written;
    +inf for a value of neither shape, which is never swept."""
    if value[:1] == "{":
        try:
            data: Any = json.loads(value)
            return datetime.fromisoformat(data["alerted_at"]).timestamp() * 1000
        except (ValueError, KeyError, TypeError):
            return float("inf")
    _, _, ms = value.partition(":")
    return float(ms) if ms.isdigit() else float("inf")
