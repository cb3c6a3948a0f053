"""The Redis implementation of Baton's state ports: match state and trigger records,
on top of the streams (`streams.RedisStreams`, the event log).

Every write that must not be half-done is one Lua script or one MULTI transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from broker.core.events import epoch_ms
from broker.matching.matcher import RecordOp, trigger_id_base
from broker.state.backfill_store import BackfillStore
from broker.state.batch import ScriptBatch
from broker.state.deadline_store import DeadlineStore
from broker.state.gate_store import GateStore
from broker.state.held import held_failures, held_inputs
from broker.state.keys import Keys
from broker.state.ports import DeadLetter, PartitionState, RecordOutcome, TriggerRecord
from broker.state.refusal_store import RefusalStore
from broker.state.retention import Sweeper
from broker.state.streams import RedisStreams
from broker.state.util import flat_fields, script, text, text_fields


def _now() -> datetime:
    return datetime.now(UTC)


def _now_ms() -> int:
    return epoch_ms(_now())


class RedisStore(RedisStreams):
    """Event log, match state and trigger store over one Redis connection pool."""

    def __init__(
        self, redis: Redis, keys: Keys, max_backlog: int, dedup_ttl_s: int,
        history_s: int = 0, markers_s: int = 0,
    ) -> None:  # fmt: skip
        """`history_s`: how long settled state is kept (`history_retention`), and
        `markers_s` the fired-markers (`markers_retention`); 0 keeps it for ever (a
        test's store, or a tool that only reads)."""
        super().__init__(redis, keys, max_backlog, dedup_ttl_s)
        self.history_ms = history_s * 1000
        self.markers_ms = markers_s * 1000
        self.deadlines = DeadlineStore(redis, keys, self.history_ms)
        self.backfills = BackfillStore(redis, keys, self.history_ms)
        self.gates = GateStore(redis, keys)
        self.refusals = RefusalStore(redis, keys)
        self.sweeper = Sweeper(redis, keys, self.markers_ms)
        self._record = script(redis, "record", "kept", "claim")
        self._due = script(redis, "due")
        self._begin = script(redis, "begin")
        self._finish_script = ScriptBatch(self.wire, script(redis, "finish", "kept", "settle"))
        self._settled = script(redis, "settled", "kept", "settle")
        self._revive = script(redis, "revive")
        self._track = script(redis, "track")

    # -- match state -------------------------------------------------------------
    async def record(
        self,
        ops: Sequence[RecordOp],
        version: str,
        ack: Sequence[str] = (),
        deliver_to: str = "",
        record_only: bool = False,
        reevaluate: bool = False,
        skip: bool = False,
    ) -> list[RecordOutcome]:
        """Run the record script for each op, pipelined (each op atomic on its own), then
        ack the `ack` event entries in the same round trip, after the records ran.
        With `deliver_to`, each firing also reads a trigger entry for that consumer.
        `record_only` (replay) records inputs and never fires or restates; `reevaluate`
        (a changed contract) evaluates waiting partitions again and never restates;
        with `skip` too (a contract resumed without firing) one that holds is marked
        done and fires nothing."""
        now = _now()
        record_keys = [self.keys.triggers, self.keys.recent, self.keys.stats, self.keys.paused]
        ack_keys = [self.keys.events, self.keys.backlog]
        commands: list[list[Any]] = []
        for op in ops:
            keys = [self.keys.partition(op.contract, op.partition), *record_keys,
                    self.keys.fired(op.contract)]  # fmt: skip
            commands.append(["EVALSHA", self._record.sha, len(keys), *keys,
                             *_record_args(op, version, now, self.keys), deliver_to,
                             op.landed_ms, op.within_ms, "1" if record_only else "",
                             "1" if reevaluate else "", "1" if skip else "",
                             self.history_ms or ""])  # fmt: skip
        if ack:
            commands.append(["EVALSHA", self._ack.sha, 2, *ack_keys, self.keys.matchers_group,
                             *ack])  # fmt: skip
        replies = await self.wire.many(commands)
        if any(isinstance(r, NoScriptError) for r in replies):
            # Redis restarted or flushed its script cache. Recording again is safe: the
            # script ignores an event id it already holds.
            for lua in (self._record, self._ack):
                await self.redis.script_load(lua.script)
            replies = await self.wire.many(commands)
        if failed := next((r for r in replies if isinstance(r, Exception)), None):
            raise failed
        return [_outcome(r, now.isoformat()) for r in replies[: len(ops)]]

    async def read_partition(self, contract: str, partition: str) -> PartitionState:
        raw = await self.redis.hgetall(self.keys.partition(contract, partition))
        return _partition_state({text(k): text(v) for k, v in raw.items()}, contract, partition)

    async def fired_marker(self, contract: str, partition: str) -> tuple[int, int] | None:
        """The last generation of a partition fired, and when (epoch ms), as its
        fired-marker keeps it; None if it never fired (or the marker is past its window)."""
        raw = await self.redis.hget(self.keys.fired(contract), partition)
        return None if raw is None else parse_marker(text(raw))

    async def partitions_of(self, contract: str, limit: int = 100) -> list[dict[str, Any]]:
        """Known partitions of a contract, newest key first, with their firing state."""
        prefix = self.keys.partition_prefix(contract)
        names = sorted(
            [text(k)[len(prefix) :] async for k in self.redis.scan_iter(f"{prefix}*", 1000)],
            reverse=True,
        )[:limit]
        out = []
        for name in names:
            got = await self.redis.hmget(prefix + name, "gen", "fired", "trigger", "skipped")
            raw = {k: text(v) for k, v in zip(("gen", "fired", "trigger", "skipped"), got,
                                              strict=True) if v is not None}  # fmt: skip
            gen, fired = int(raw.get("gen", 0)), int(raw.get("fired", -1))
            out.append({"partition": name, "generation": gen, "fired": fired >= gen,
                        "trigger_id": fired_trigger(raw, contract, name)})  # fmt: skip
        return out

    # -- trigger records ---------------------------------------------------------
    async def get_trigger(self, trigger_id: str) -> TriggerRecord | None:
        raw = await self.redis.hgetall(self.keys.trigger(trigger_id))
        if not raw:
            return None
        return TriggerRecord.from_hash({text(k): text(v) for k, v in raw.items()}, trigger_id)

    async def recent_triggers(self, limit: int = 50) -> list[TriggerRecord]:
        """The newest `limit` triggers, newest first."""
        listed: Any = await self.redis.xrevrange(self.keys.recent, count=limit)
        ids = [text_fields(fields).get("t", "") for _, fields in listed]
        if len(ids) < limit:  # and those listed before the stream, while they last
            before: Any = await self.redis.zrevrange(
                self.keys.recent_before, 0, limit - len(ids) - 1
            )
            ids += [text(i) for i in before]
        records = [await self.get_trigger(i) for i in ids if i]
        return [r for r in records if r is not None]

    async def ensure_groups(self) -> None:
        await super().ensure_groups()
        if self.history_ms and await self.redis.ttl(self.keys.recent_before) == -1:
            await self.redis.pexpire(self.keys.recent_before, self.history_ms)

    async def begin_attempt(self, trigger_id: str) -> TriggerRecord | None:
        """Count an attempt and return the record; None if missing or already done."""
        flat = await self._begin(keys=[self.keys.trigger(trigger_id)], args=[_now_ms()])
        if not flat:
            return None
        return TriggerRecord.from_hash(flat_fields(flat), trigger_id)

    async def dispatched(
        self, trigger_id: str, entry_id: str, ref: str, url: str, warning: str = "",
        target: str = "", settled: tuple[str, str] | None = None,
    ) -> None:  # fmt: skip
        """Started: the run is followed among `target`'s, first looked at right away;
        or, `settled` (its state and detail), it was over when the target answered (a
        webhook's), and the trigger is settled in the same step, as a look would."""
        fields = {"state": "succeeded", "downstream_ref": ref, "downstream_url": url}
        if warning:
            fields["warning"] = warning
        if settled is None:
            fields["run_state"] = "queued"
            await self._finish(trigger_id, entry_id, fields, track_ms=_now_ms(),
                               tracking=self.keys.tracking_of(target))  # fmt: skip
            return
        # Looked at once, as it settles (when: the record's `updated_at`).
        fields |= {"run_state": settled[0], "run_detail": settled[1], "run_checks": "1"}
        await self._finish(trigger_id, entry_id, fields, target=target, settles=True)

    async def retry_later(
        self, trigger_id: str, entry_id: str, error: str, due_ms: int, target: str = ""
    ) -> None:
        """Retry at `due_ms`; the attempt is over, so it leaves `target`'s runs in flight."""
        fields = {"state": "retrying", "last_error": error}
        await self._finish(trigger_id, entry_id, fields, due_ms=due_ms, target=target)

    async def move_due_retries(self, now_ms: int, count: int = 100) -> int:
        return int(
            await self._due(keys=[self.keys.retries, self.keys.triggers], args=[now_ms, count])
        )

    async def dead_letter(
        self, trigger_id: str, entry_id: str, error: str, target: str = "",
        attempts: int | None = None,
    ) -> None:  # fmt: skip
        """Failed for good (`entry_id` "" for a trigger not read from the stream: one
        that waited for its target too long); `attempts` corrects the count when this
        start made no call."""
        fields = {"state": "failed", "last_error": error}
        if attempts is not None:
            fields["attempts"] = str(attempts)
        await self._finish(trigger_id, entry_id, fields, dead=error, target=target)

    async def wait_for_target(
        self, trigger_id: str, entry_id: str, error: str, target: str, created_ms: int
    ) -> None:
        """Wait, uncounted, among `target`'s waiting triggers (its circuit breaker just
        opened): released oldest first once a probe gets through."""
        fields = {"state": "waiting", "waiting_for": "breaker", "last_error": error,
                  "target": target}  # fmt: skip
        await self._finish(trigger_id, entry_id, fields, due_ms=created_ms, target=target,
                           queue=self.keys.target_waiting(target))  # fmt: skip

    async def _finish(
        self,
        trigger_id: str,
        entry_id: str,
        fields: dict[str, str],
        due_ms: int | None = None,
        dead: str | None = None,
        track_ms: int | None = None,
        target: str = "",
        queue: str | None = None,
        tracking: str | None = None,
        settles: bool = False,
    ) -> None:
        """Record the outcome and ack the stream entry in one step (a Lua script). With
        `target`, the trigger leaves its runs in flight (and, unless it waits again, its
        waiting set); `queue` takes `due_ms` instead of the retries. A dead letter, or
        `settles`, ends the trigger: its record is kept for the history window."""
        keys = self.keys
        leave = []
        if target:
            leave.append(keys.target_running(target))
            if queue is None:
                leave.append(keys.target_waiting(target))
        await self._finish_script(
            [keys.trigger(trigger_id), keys.triggers, queue or keys.retries,
             keys.dead_letters, tracking or keys.tracking, keys.stats, *leave],
            [
                keys.dispatchers_group, entry_id, trigger_id, _now().isoformat(),
                "" if due_ms is None else due_ms, "" if dead is None else dead or "no message",
                "" if track_ms is None else track_ms, self.history_ms or "", _now_ms(),
                "1" if settles else "", *(item for pair in fields.items() for item in pair),
            ],
        )  # fmt: skip

    # -- run tracking ------------------------------------------------------------------
    async def lease_tracked(
        self, tracking: str, now_ms: int, lease_ms: int, count: int
    ) -> tuple[list[str], int | None]:
        """Up to `count` runs of the `tracking` set that are due, leased for `lease_ms`;
        and when the next one is due after them (None: nothing is tracked there)."""
        ids, head = await self._track(keys=[tracking], args=[now_ms, lease_ms, count])
        return [text(i) for i in ids], int(float(head)) if head else None

    async def run_seen(
        self, tracking: str, trigger_id: str, run_state: str, detail: str,
        next_ms: int | None, target: str = "",
    ) -> None:  # fmt: skip
        """Record where the downstream run stands; look again at `next_ms`, or stop
        following it (None: it finished, and leaves `target`'s runs in flight)."""
        fields = {"run_state": run_state, "run_detail": detail, "run_checked_at": str(_now_ms())}
        key = self.keys.trigger(trigger_id)
        if next_ms is None:  # settled: kept for the history window from now
            leave = [self.keys.target_running(target)] if target else []
            await self._settled(
                keys=[key, tracking, *leave],
                args=[trigger_id, self.history_ms or "", *(i for p in fields.items() for i in p)],
            )
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
            pipe.hincrby(key, "run_checks", 1)
            pipe.zadd(tracking, {trigger_id: next_ms})
            await pipe.execute()

    # -- signed requests -----------------------------------------------------------
    async def first_use(self, signature: str, ttl_s: int) -> bool:
        """Mark a request signature used; False if it was already (a replay)."""
        key = self.keys.signature(signature)
        return bool(await self.redis.set(key, 1, nx=True, ex=ttl_s))

    # -- dead letters ------------------------------------------------------------------
    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The dead-letter stream, newest first."""
        raw: Any = await self.redis.xrevrange(self.keys.dead_letters, count=limit)
        return [DeadLetter.from_entry(text(i), text_fields(f)) for i, f in raw if f is not None]

    async def revive(self, trigger_id: str, entries: Sequence[str]) -> bool:
        """Put a dead-lettered trigger back on the triggers stream and drop its
        dead-letter `entries` (see revive.lua)."""
        revived = await self._revive(
            keys=[self.keys.trigger(trigger_id), self.keys.triggers, self.keys.dead_letters],
            args=[trigger_id, _now_ms(), *entries],
        )
        return bool(revived)


def parse_marker(value: str) -> tuple[int, int]:
    """A fired-marker's `<generation>:<epoch ms>` (`Keys.fired`) as numbers."""
    gen, _, ms = value.partition(":")
    return int(gen), int(ms or 0)


def _record_args(op: RecordOp, version: str, now: datetime, keys: Keys) -> list[Any]:
    return [
        "p" if op.partitioned else "u",
        op.slot,
        op.payload,
        op.event_id,
        op.order,
        op.status,
        op.restatement,
        op.tree,
        trigger_id_base(op.contract, op.partition),
        now.isoformat(),
        keys.trigger_prefix(),
        op.contract,
        op.partition,
        version,
        int(now.timestamp() * 1000),
        keys.dispatchers_group,
    ]


def _outcome(reply: list[Any], at: str) -> RecordOutcome:
    extra = [text(v) for v in reply[3:6]] if len(reply) > 3 else [None, None, None]
    return RecordOutcome(
        outcome=text(reply[0]),
        trigger_id=text(reply[1]) or None,
        generation=int(reply[2]),
        delivered_entry=extra[0],
        delivered_trigger=extra[1],
        inputs=extra[2],
        at=at,
    )


def fired_trigger(raw: dict[str, str], contract: str, partition: str) -> str | None:
    """The id of the trigger a partition hash's last firing made: its base and `fired`
    (claim.lua), or `trigger` as an earlier Baton kept it; None if it never fired or
    that firing was skipped."""
    if "trigger" in raw:
        return raw["trigger"]
    if "fired" not in raw or "skipped" in raw:
        return None
    return f"{trigger_id_base(contract, partition)}{raw['fired']}"


def _partition_state(raw: dict[str, str], contract: str, partition: str) -> PartitionState:
    successes = {slot: i.event for slot, i in held_inputs(raw).items()}
    failures = held_failures(raw)
    consumed = frozenset(k[2:] for k in raw if k.startswith("c:"))
    return PartitionState(
        generation=int(raw.get("gen", 0)),
        fired=int(raw.get("fired", -1)),
        trigger_id=fired_trigger(raw, contract, partition),
        successes=successes,
        failures=failures,
        consumed=consumed,
        restored_from=parse_marker(raw["expired"]) if "expired" in raw else None,
        empty=not raw,
    )
