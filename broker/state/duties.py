"""The background duties' health, as Redis shows it to any process.

Two facts per duty:
- **behind**: how long the oldest piece of its work has been due and not done, read
  from the duty's own queue (a target's tracking set, the retries, the deadline clock,
  the alerts waiting to be sent). Duties without a queue of due work (gates, backfills,
  reclaim) have none.
- **last round**: how long ago any worker finished a round of it; every worker notes
  its rounds in `<ns>:duty:<name>` (consumer -> epoch ms), at most every `BEAT_EVERY_S`.

A duty is `ok`, `behind` (its oldest due work waited past `BEHIND_S`), `stalled` (no
worker finished a round for `STALLED_S`) or `no worker` (none ever ran it here).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis

from broker.state.keys import Keys
from broker.state.util import text

BEAT_EVERY_S = 5.0
BEHIND_S = 30.0
STALLED_S = 60.0
# Beats older than this are dropped (a worker that is gone).
BEATS_KEPT_S = 86_400

DUTIES = ("retries", "gates", "alerts", "deadlines", "backfills", "reclaim")


def tracking_duty(target: str) -> str:
    """A target's tracking lane; "" is the lane of runs dispatched before tracking was
    kept per target (`Keys.tracking`), named plain `tracking` so that no target's name
    can be taken for it."""
    return f"tracking:{target}" if target else "tracking"


class DutyBeats:
    """One worker's notes that it finished a round of a duty."""

    def __init__(self, redis: Redis, keys: Keys, consumer: str) -> None:
        self.redis = redis
        self.keys = keys
        self.consumer = consumer
        self._noted: dict[str, float] = {}

    async def beat(self, duty: str) -> None:
        now = time.time()
        if now - self._noted.get(duty, 0.0) < BEAT_EVERY_S:
            return
        self._noted[duty] = now
        key = self.keys.duty_beats(duty)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {self.consumer: int(now * 1000)})
            pipe.zremrangebyscore(key, "-inf", int((now - BEATS_KEPT_S) * 1000))
            pipe.expire(key, BEATS_KEPT_S)
            await pipe.execute()


async def report(redis: Redis, keys: Keys, targets: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Each duty: {state, behind_s, last_round_s}; see the module docstring."""
    now_ms = int(time.time() * 1000)
    lanes = [(tracking_duty(t), keys.tracking_of(t)) for t in targets]
    lanes.append((tracking_duty(""), keys.tracking))
    queues = [*lanes, ("retries", keys.retries), ("deadlines", keys.deadlines)]
    names = [name for name, _ in lanes] + list(DUTIES)
    async with redis.pipeline(transaction=False) as pipe:
        for _, key in queues:
            pipe.zrange(key, 0, 0, withscores=True)
        for name in names:
            pipe.zrange(keys.duty_beats(name), -1, -1, withscores=True)
        for stream in (keys.dead_letters, keys.alerts):
            pipe.xinfo_groups(stream)
        replies = await pipe.execute(raise_on_error=False)
    heads = replies[: len(queues)]
    beats = replies[len(queues) : len(queues) + len(names)]
    groups = replies[len(queues) + len(names) :]
    behind: dict[str, float] = {}
    for (name, _), head in zip(queues, heads, strict=True):
        behind[name] = _due_for(head, now_ms)
    behind["alerts"] = max(
        [await _unsent_for(redis, stream, g, keys.alerters_group, now_ms)
         for stream, g in zip((keys.dead_letters, keys.alerts), groups, strict=True)]
    )  # fmt: skip
    out: dict[str, dict[str, Any]] = {}
    for name, beat in zip(names, beats, strict=True):
        last = (now_ms - int(beat[0][1])) / 1000 if isinstance(beat, list) and beat else None
        late = behind.get(name)
        out[name] = {"state": _state(late, last), "behind_s": late, "last_round_s": last}
    return out


def _due_for(head: Any, now_ms: int) -> float:
    """How long the first member of a sorted set scored by due time has been due."""
    if not isinstance(head, list) or not head:
        return 0.0
    return round(max(0.0, (now_ms - float(head[0][1])) / 1000), 3)


async def _unsent_for(redis: Redis, stream: str, groups: Any, group: str, now_ms: int) -> float:
    """How long the oldest entry of `stream` not yet acked by `group` has waited."""
    if not isinstance(groups, list):
        return 0.0  # no stream yet
    for info in groups:
        if text(info["name"]) != group:
            continue
        oldest: list[str] = []
        pending: Any = await redis.xpending(stream, group)
        if pending and pending.get("min"):
            oldest.append(text(pending["min"]))
        after = text(info["last-delivered-id"])
        unread: Any = await redis.xrange(stream, min=f"({after}", count=1)
        if unread:
            oldest.append(text(unread[0][0]))
        if not oldest:
            return 0.0
        first_ms = min(int(entry.split("-")[0]) for entry in oldest)
        return round(max(0.0, (now_ms - first_ms) / 1000), 3)
    return 0.0


def _state(behind: float | None, last_round: float | None) -> str:
    if last_round is None:
        return "no worker"
    if last_round > STALLED_S:
        return "stalled"
    if behind is not None and behind > BEHIND_S:
        return "behind"
    return "ok"
