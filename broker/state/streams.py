"""The Redis streams Baton's stages hand work over on: events, triggers, dead letters, alerts.

Creating the consumer groups, appending events (deduplicated, bounded by the backlog, in
one Lua script), reading new entries as a group, acking them, reclaiming entries a dead
consumer left pending, and the events stream's replay window and trim.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from broker.core.errors import BacklogFull
from broker.state.batch import ScriptBatch
from broker.state.keys import Keys
from broker.state.ports import StreamEntry
from broker.state.util import script, text, text_fields
from broker.state.wire import Wire


class RedisStreams:
    """The event log, and the stream plumbing every consumer group shares."""

    def __init__(self, redis: Redis, keys: Keys, max_backlog: int, dedup_ttl_s: int) -> None:
        self.redis = redis
        self.keys = keys
        self.max_backlog = max_backlog
        self.dedup_ttl_s = dedup_ttl_s
        # The hot paths' commands go on a connection of their own (wire.py).
        self.wire = Wire(redis)
        # Requests that land in the same loop turn share one pipeline (batch.py)
        self._ingest = ScriptBatch(self.wire, script(redis, "ingest"))
        self._ack = script(redis, "ack")

    async def ensure_groups(self) -> None:
        """Create both consumer groups at the start of their streams (not at `$`),
        so events accepted before the first worker ever started are still matched."""
        for stream, group in (
            (self.keys.events, self.keys.matchers_group),
            (self.keys.triggers, self.keys.dispatchers_group),
            (self.keys.dead_letters, self.keys.alerters_group),
            (self.keys.alerts, self.keys.alerters_group),
        ):
            try:
                await self.redis.xgroup_create(stream, group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def append(self, events: Sequence[tuple[str, str]]) -> list[str | None]:
        """XADD each (event_id, payload) unless its id was seen; all or nothing. Each
        event's new entry id, or None for a duplicate."""
        args: list[str | int] = [
            self.max_backlog,
            self.dedup_ttl_s,
            self.keys.dedup_prefix(),
            "\n".join(event_id for event_id, _ in events),
            "\n".join(payload for _, payload in events),
            len(events),
            self.keys.dedup_prefix_before(),
        ]
        keys = [self.keys.events, self.keys.backlog, self.keys.stats]
        reply = await self._ingest(keys=keys, args=args)
        if int(reply[0]) == 1:
            raise BacklogFull(int(reply[1]), self.max_backlog)
        return [None if added == 0 else text(added) for added in reply[2:]]

    async def backlog(self) -> int:
        return int(await self.redis.get(self.keys.backlog) or 0)

    async def read_new(
        self, stream: str, group: str, consumer: str, count: int
    ) -> list[StreamEntry]:
        """New entries for this consumer, without blocking (for the background loops)."""
        reply: Any = await self.redis.xreadgroup(group, consumer, {stream: ">"}, count=count)
        return [
            (text(i), text_fields(f)) for _, batch in reply or [] for i, f in batch if f is not None
        ]

    async def ack(self, stream: str, group: str, *entry_ids: str) -> None:
        if entry_ids:
            await self.redis.xack(stream, group, *entry_ids)

    async def ack_trigger_entry(self, entry_id: str) -> None:
        """Ack a trigger entry with nothing to record, and delete it (see `Keys.triggers`)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.keys.triggers, self.keys.dispatchers_group, entry_id)
            pipe.xdel(self.keys.triggers, entry_id)
            await pipe.execute()

    async def reclaim(
        self, stream: str, group: str, consumer: str, min_idle_ms: int, count: int
    ) -> list[StreamEntry]:
        """Take over entries another consumer left pending for `min_idle_ms`."""
        entries: list[StreamEntry] = []
        start = "0-0"
        while True:
            reply = await self.redis.xautoclaim(
                stream, group, consumer, min_idle_ms, start_id=start, count=count
            )
            start, batch = text(reply[0]), reply[1]
            entries += [(text(i), text_fields(f)) for i, f in batch if f is not None]
            if start == "0-0" or len(entries) >= count:
                return entries

    async def events_between(
        self, start_ms: int, end_ms: int, after: str | None = None, count: int = 1000
    ) -> list[StreamEntry]:
        """Entries of the events stream that landed in [start_ms, end_ms], oldest first,
        a page at a time (`after`: the last id of the previous page)."""
        low = f"({after}" if after else f"{start_ms}-0"
        rows: Any = await self.redis.xrange(self.keys.events, low, f"{end_ms}-18446744073709551615",
                                            count=count)  # fmt: skip
        return [(text(i), {text(k): text(v) for k, v in f.items()}) for i, f in rows]

    async def trim_events(self, keep_after_ms: int) -> int:
        """Drop events that landed before `keep_after_ms`, never one the matchers have not
        been handed yet (their group's last-delivered id bounds the cut)."""
        groups: Any = await self.redis.xinfo_groups(self.keys.events)
        cut = f"{keep_after_ms}-0"
        for group in groups:
            name = text(group["name"])
            if name == self.keys.matchers_group:
                delivered = text(group["last-delivered-id"])
                if _stream_id_key(delivered) < _stream_id_key(cut):
                    cut = delivered
        return int(await self.redis.xtrim(self.keys.events, minid=cut, approximate=False))


def _stream_id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
