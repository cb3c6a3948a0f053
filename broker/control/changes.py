"""What a new contract set changes, and what that does to the state that is live.

A contract is its `name`: a renamed contract is a new one, and the old name is removed.
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

`baton diff` previews the same rules over the same state without changing anything.
The applied definitions are kept in Redis (`<ns>:contracts:defs`, name -> digest of each
aspect), so any worker can tell what changed since the last set was applied.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from broker.contracts.model import Contract, contract_calendar
from broker.core.events import from_wire
from broker.core.partitions import PartitionError
from broker.core.secrets import redact
from broker.matching.condition import build_tree, holds
from broker.matching.matcher import Matcher, RecordOp
from broker.state.deadline_store import member, split_member
from broker.state.redis_store import RedisStore
from broker.state.util import text
from broker.time.deadlines import deadline_at, watched

if TYPE_CHECKING:
    from broker.matching.loaded import Contracts

log = logging.getLogger("baton.changes")

# Which fields make up each aspect of a contract; a change is reported per aspect.
ASPECTS: dict[str, tuple[str, ...]] = {
    "condition": ("when", "within", "on_restatement"),
    "partitioning": ("partitioned", "timezone", "partitions"),
    "deadline": ("deadline", "on_deadline"),
    "trigger": ("trigger", "produces", "retry"),
    "about": ("owner", "description"),
}
# Aspects whose change makes waiting partitions be evaluated again.
REEVALUATE = frozenset({"condition", "partitioning"})
SHOWN = 5  # partitions named in a message; the rest are counted


def digests(contract: Contract) -> dict[str, str]:
    """A short digest of each aspect of `contract`'s definition."""
    data = contract.model_dump(mode="json")
    out = {}
    for aspect, names in ASPECTS.items():
        blob = json.dumps([data.get(n) for n in names], sort_keys=True, separators=(",", ":"))
        out[aspect] = hashlib.sha1(blob.encode()).hexdigest()[:12]
    return out


@dataclass(slots=True)
class Effect:
    kind: str  # would_fire | still_waiting | no_inputs | resumes | stops | alert_now | ...
    message: str
    count: int = 0
    partitions: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ContractChange:
    name: str
    change: str  # added | removed | changed
    aspects: list[str] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)  # `deadline: +2h -> +1h`, `when`
    effects: list[Effect] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(old: Mapping[str, Contract], new: Mapping[str, Contract]) -> list[ContractChange]:
    """Per contract name: added, removed, or which aspects and fields changed."""
    out = []
    for name in sorted(old.keys() | new.keys()):
        before, after = old.get(name), new.get(name)
        if before is None:
            out.append(ContractChange(name, "added"))
        elif after is None:
            out.append(ContractChange(name, "removed"))
        else:
            a, b = digests(before), digests(after)
            aspects = [k for k in ASPECTS if a[k] != b[k]]
            if aspects:
                fields = _field_changes(before, after, aspects)
                out.append(ContractChange(name, "changed", aspects, fields))
    return out


def _field_changes(before: Contract, after: Contract, aspects: Iterable[str]) -> list[str]:
    a, b = before.model_dump(mode="json"), after.model_dump(mode="json")
    # Shown as written: defaults left out (`{"dataset": "x"}`, not every field of Input),
    # and a credential written out masked (a PR comment is no place for it).
    shown_a, shown_b = (redact(c.model_dump(mode="json", exclude_defaults=True))
                        for c in (before, after))  # fmt: skip
    out = []
    for aspect in aspects:
        for name in ASPECTS[aspect]:
            if a.get(name) == b.get(name):
                continue
            old, new = _short(shown_a.get(name)), _short(shown_b.get(name))
            out.append(f"{name}: {old} -> {new}" if old and new else f"{name}: changed")
    return out


def _short(value: Any) -> str:
    shown = json.dumps(value, separators=(",", ":")) if value is not None else "none"
    return shown if len(shown) <= 60 else ""


def _list(partitions: list[str]) -> str:
    shown = ", ".join(partitions[:SHOWN])
    more = len(partitions) - SHOWN
    return f"{shown} and {more} more" if more > 0 else shown


# -- the live state ---------------------------------------------------------------------
@dataclass(slots=True)
class Held:
    """One recorded partition hash of a contract."""

    key: str
    partition: str
    fields: dict[str, str]

    @property
    def generation(self) -> int:
        return int(self.fields.get("gen", 0))

    @property
    def fired(self) -> int:
        return int(self.fields.get("fired", -1))

    def waiting(self, partitioned: bool) -> bool:
        """Has inputs and has not fired in its generation (unpartitioned: has inputs no
        firing consumed)."""
        slots = [k[2:] for k in self.fields if k.startswith("e:")]
        if not slots:
            return False
        if partitioned:
            return self.fired < self.generation
        return any(f"c:{s}" not in self.fields for s in slots)

    def events(self) -> dict[str, tuple[str, str]]:
        """event id -> (slot payload, order key), for each input held."""
        out = {}
        for k, v in self.fields.items():
            if k.startswith("e:"):
                s = k[2:]
                out[v] = (self.fields[f"s:{s}"], self.fields.get(f"o:{s}", ""))
        return out


class LiveState:
    """Reads what the changes touch: partition hashes, the deadline clock, and the
    record of applied definitions and removed contracts."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self.redis = store.redis
        self.defs_key = store.keys.contracts_applied
        self.removed_key = store.keys.contracts_removed
        self.lock_key = store.keys.contracts_applying

    async def held(self, names: Iterable[str]) -> dict[str, list[Held]]:
        """The partition hashes of the `names` contracts, in one pass over the keys."""
        wanted = set(names)
        out: dict[str, list[Held]] = {n: [] for n in wanted}
        if not wanted:
            return out
        prefix = self.store.keys.partition_prefix("")[:-1]  # `<ns>:p:`
        keys: list[tuple[str, str, str]] = []
        async for raw in self.redis.scan_iter(f"{prefix}*", count=1000):
            key = text(raw)
            contract, _, partition = key[len(prefix) :].partition(":")
            if contract in wanted:
                keys.append((contract, key, partition))
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            async with self.redis.pipeline(transaction=False) as pipe:
                for _, key, _ in chunk:
                    pipe.hgetall(key)
                replies = await pipe.execute()
            for (contract, key, partition), raw in zip(chunk, replies, strict=True):
                if raw:
                    fields = {text(k): text(v) for k, v in raw.items()}
                    out[contract].append(Held(key, partition, fields))
        for items in out.values():
            items.sort(key=lambda h: h.partition)
        return out

    async def applied(self) -> dict[str, dict[str, str]]:
        raw: Any = await self.redis.hgetall(self.defs_key)
        return {text(k): json.loads(v) for k, v in raw.items()}

    async def removed(self) -> dict[str, dict[str, str]]:
        raw: Any = await self.redis.hgetall(self.removed_key)
        return {text(k): json.loads(v) for k, v in raw.items()}

    async def removed_note(self, name: str) -> str | None:
        """Why `name` is not loaded, when it was removed and its state is still kept."""
        raw = await self.redis.hget(self.removed_key, name)
        if raw is None:
            return None
        record = json.loads(raw)
        when, until = record["removed_at"][:19], record["kept_until"][:19]
        return f"{name} was removed at {when} ({record['version']}); state kept until {until}"

    async def clock(self, name: str) -> dict[str, int]:
        """Partitions of `name` on the deadline clock -> their deadline (ms)."""
        out = {}
        async for raw, score in self.redis.zscan_iter(
            self.store.keys.deadlines, match=f"{name}|*", count=1000
        ):
            out[split_member(text(raw))[1]] = int(score)
        return out


def replan(contract: Contract, matcher: Matcher, waiting: Iterable[Held]) -> list[RecordOp]:
    """The events recorded for `waiting` partitions, matched again against the contract
    as `matcher` now holds it (its new condition and partitioning), each at its own
    place in time (the order key it was recorded with)."""
    events: dict[str, tuple[str, str]] = {}
    for held in waiting:
        events.update(held.events())
    ops = []
    for payload, order in events.values():
        try:
            event, received_at = from_wire(payload)
        except (KeyError, ValueError):
            continue  # not readable as an event: nothing to match again
        plan = matcher.plan(event, received_at, f"{int(received_at.timestamp() * 1000)}-0")
        ops += [replace(op, order=order or op.order) for op in plan.ops
                if op.contract == contract.name]  # fmt: skip
    return ops


async def reevaluate_waiting(
    store: RedisStore,
    contract: Contract,
    matcher: Matcher,
    waiting: list[Held],
    version: str,
    skip: bool = False,
) -> list[tuple[str, str]]:
    """Evaluate `waiting` partitions again with the inputs they hold; those that hold
    fire once (or, with `skip`, are marked done unfired). Returns (partition, trigger
    id) for each that fired, or (partition, "") for each skipped."""
    ops = replan(contract, matcher, waiting)
    outcomes = await store.record(ops, version, reevaluate=True, skip=skip) if ops else []
    done: list[tuple[str, str]] = []
    now = datetime.now(UTC)
    for op, outcome in zip(ops, outcomes, strict=True):
        if outcome.outcome == "skipped":
            done.append((op.partition, ""))
        elif outcome.outcome == "fired" and outcome.trigger_id:
            done.append((op.partition, outcome.trigger_id))
            await store.deadlines.recovered(op.contract, op.partition, outcome.trigger_id, now)
    return done


def would_fire(
    contract: Contract, ops: list[RecordOp], held: Mapping[str, Held]
) -> tuple[list[str], list[str]]:
    """A dry run of re-evaluation: (partitions that would fire, partitions still waiting),
    mirroring record.lua in re-evaluate mode."""
    partitioned = contract.partitioned != "none"
    present: dict[str, dict[str, int]] = {}  # partition -> slot -> landed ms
    for key, h in held.items():
        if h.waiting(partitioned) or not partitioned:
            present[key] = {
                k[2:]: int(h.fields.get(f"r:{k[2:]}", 0) or 0)
                for k in h.fields
                if k.startswith("e:") and (partitioned or f"c:{k[2:]}" not in h.fields)
            }
    for op in ops:
        found = held.get(op.partition)
        if found is not None and partitioned and not found.waiting(partitioned):
            continue  # fired in its generation: re-evaluation never restates
        if found is not None and f"c:{op.slot}" in found.fields:
            continue  # consumed by the last firing of an unpartitioned contract
        present.setdefault(op.partition, {}).setdefault(op.slot, op.landed_ms)
    window = int(contract.within.total_seconds() * 1000) if contract.within else 0
    fire: list[str] = []
    wait: list[str] = []
    for partition, slots in sorted(present.items()):
        if not slots:
            continue
        newest = max(slots.values())
        counted = {s for s, ms in slots.items() if not window or ms >= newest - window}
        try:
            tree = build_tree(contract, partition)
        except PartitionError:
            continue
        (fire if holds(tree, counted) else wait).append(partition)
    return fire, wait


# -- applying a change (the worker) ----------------------------------------------------------
@dataclass(slots=True)
class Applied:
    changes: list[ContractChange]
    fired: list[str] = field(default_factory=list)  # trigger ids fired by re-evaluation


def since_applied(
    applied: Mapping[str, Mapping[str, str]], fresh: Mapping[str, Mapping[str, str]]
) -> list[ContractChange]:
    """The changes from the applied definitions to `fresh` ones (both as digests)."""
    changes: list[ContractChange] = []
    for name in sorted(applied.keys() | fresh.keys()):
        if name not in fresh:
            changes.append(ContractChange(name, "removed"))
        elif name not in applied:
            changes.append(ContractChange(name, "added"))
        else:
            aspects = [a for a in ASPECTS if applied[name].get(a) != fresh[name][a]]
            if aspects:
                changes.append(ContractChange(name, "changed", aspects))
    return changes


class ChangeApplier:
    """Brings the live state in line with a newly loaded contract set (the rules above)."""

    def __init__(self, store: RedisStore, retention: timedelta) -> None:
        self.store = store
        self.state = LiveState(store)
        self.retention = retention

    async def apply(
        self, contracts: Mapping[str, Contract], matcher: Matcher, version: str
    ) -> Applied | None:
        """Apply what changed since the last set applied; None when another process is
        applying right now (it applies the same rules to the same state)."""
        redis = self.store.redis
        if not await redis.set(self.state.lock_key, version, nx=True, px=120_000):
            return None
        try:
            return await self._apply(contracts, matcher, version)
        finally:
            await redis.delete(self.state.lock_key)

    async def _apply(
        self, contracts: Mapping[str, Contract], matcher: Matcher, version: str
    ) -> Applied:
        # Off the event loop: about 40 us a contract, 0.4 s for 10,000.
        fresh = await asyncio.to_thread(lambda: {n: digests(c) for n, c in contracts.items()})
        changes = since_applied(await self.state.applied(), fresh)
        result = Applied(changes)
        if not changes:
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
        await self._record_applied(changes, fresh)
        return result

    async def _record_applied(
        self, changes: list[ContractChange], fresh: Mapping[str, Mapping[str, str]]
    ) -> None:
        gone = [c.name for c in changes if c.change == "removed"]
        updates = {c.name: json.dumps(fresh[c.name]) for c in changes if c.name in fresh}
        async with redis_pipeline(self.store) as pipe:
            if gone:
                pipe.hdel(self.state.defs_key, *gone)
            if updates:
                pipe.hset(self.state.defs_key, mapping=updates)
            await pipe.execute()

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
        async with redis_pipeline(self.store) as pipe:
            for h in held:
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
            ms = _deadline_ms(contract, partition)
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


# -- previewing a change (`baton diff`) --------------------------------------------------------
async def preview(
    state: LiveState,
    old: Mapping[str, Contract],
    new: Mapping[str, Contract],
    retention: timedelta,
    now: datetime | None = None,
) -> list[ContractChange]:
    """`compare`, with what each change would do to the live state in Redis."""
    now = now or datetime.now(UTC)
    changes = compare(old, new)
    removed = await state.removed()
    held = await state.held(c.name for c in changes)
    matcher = Matcher(new.values())
    for change in changes:
        name, mine = change.name, held[change.name]
        if change.change == "added":
            change.effects.append(_added(name, mine, removed.get(name)))
        elif change.change == "removed":
            change.effects.append(_removed(old[name], mine, retention, now))
        else:
            if REEVALUATE & set(change.aspects):
                change.effects += _reevaluated(new[name], matcher, mine)
            if {"deadline", "partitioning"} & set(change.aspects):
                change.effects += await _deadline_moves(state, old[name], new[name], mine, now)
            if "trigger" in change.aspects:
                change.effects.append(Effect("trigger", "the next firings use the new trigger; "
                                             "triggers already made keep theirs"))  # fmt: skip
    return changes


def _effect(kind: str, message: str, partitions: list[str] | None = None) -> Effect:
    """An effect on the partitions named; `{n}` in `message` becomes their count and
    `{which}` their list (the first few), `{s}` a plural s."""
    items = partitions or []
    shown = [p or "(unpartitioned)" for p in items]
    text = message.format(n=len(items), which=_list(shown), s="" if len(items) == 1 else "s")
    return Effect(kind, text, len(items), items)


def _added(name: str, held: list[Held], removed: Mapping[str, str] | None) -> Effect:
    if held and removed is not None:
        when = removed["removed_at"][:19]
        return _effect("resumes", f"comes back: resumes {{n}} kept partition{{s}} (removed {when})",
                       [h.partition for h in held])  # fmt: skip
    if held:
        return _effect("resumes", "has {n} partition{s} of state already",
                       [h.partition for h in held])  # fmt: skip
    return _effect("no_inputs", "a new contract with no inputs yet")


def _removed(contract: Contract, held: list[Held], retention: timedelta, now: datetime) -> Effect:
    partitioned = contract.partitioned != "none"
    waiting = [h.partition for h in held if h.waiting(partitioned)]
    until = (now + retention).date().isoformat()
    if not waiting:
        return _effect("stops", f"stops; no partition is waiting (state kept until {until})")
    return _effect("stops", "stops: {n} waiting partition{s} would never fire ({which}); "
                   f"state kept until {until}", waiting)  # fmt: skip


def _reevaluated(contract: Contract, matcher: Matcher, held: list[Held]) -> list[Effect]:
    partitioned = contract.partitioned != "none"
    waiting = [h for h in held if h.waiting(partitioned)]
    if not waiting:
        return [_effect("still_waiting", "no partition is waiting: nothing to evaluate again")]
    ops = replan(contract, matcher, waiting)
    fire, wait = would_fire(contract, ops, {h.partition: h for h in held})
    out = []
    if fire:
        message = f"{{n}} waiting partition{{s}} of {contract.name} would fire at once: {{which}}"
        out.append(_effect("would_fire", message, fire))
    if wait:
        out.append(_effect("still_waiting", "{n} partition{s} would still wait: {which}", wait))
    return out


async def _deadline_moves(
    state: LiveState, old: Contract, new: Contract, held: list[Held], now: datetime
) -> list[Effect]:
    fired = {h.partition for h in held if h.fired >= 0}
    now_ms = int(now.timestamp() * 1000)
    moves: dict[str, list[str]] = {"alert_now": [], "deadline_earlier": [],
                                   "deadline_later": [], "off_clock": []}  # fmt: skip
    for partition, score in sorted((await state.clock(new.name)).items()):
        ms = _deadline_ms(new, partition)
        if ms is None:
            moves["off_clock"].append(partition)
        elif ms < score and ms <= now_ms and partition not in fired:
            moves["alert_now"].append(partition)
        elif ms != score:
            moves["deadline_earlier" if ms < score else "deadline_later"].append(partition)
    messages = {
        "alert_now": "deadline moves earlier: {n} partition{s} would alert now ({which})",
        "deadline_earlier": "deadline moves earlier for {n} watched partition{s} ({which})",
        "deadline_later": "deadline moves later for {n} watched partition{s} ({which})",
        "off_clock": "{n} watched partition{s} leave the deadline clock ({which})",
    }
    out = [_effect(kind, messages[kind], items) for kind, items in moves.items() if items]
    if not watched(old) and watched(new):
        out.append(_effect("deadline_new", "a new deadline: partitions are watched from now on"))
    return out


def _deadline_ms(contract: Contract, partition: str) -> int | None:
    try:
        when = deadline_at(contract, partition)
    except PartitionError:
        return None
    return None if when is None else int(when.timestamp() * 1000)


def render(changes: list[ContractChange], old_version: str, new_version: str, live: str) -> str:
    """The text of `baton diff`, fit for a terminal and for a PR comment."""
    lines = [f"contracts {old_version} -> {new_version} ({live})"]
    if not changes:
        lines.append("no contract changes")
    mark = {"added": "+", "removed": "-", "changed": "~"}
    for change in changes:
        about = f" ({', '.join(change.aspects)})" if change.aspects else ""
        lines.append(f"{mark[change.change]} {change.name}: {change.change}{about}")
        lines += [f"    {f}" for f in change.fields]
        lines += [f"    => {e.message}" for e in change.effects]
    return "\n".join(lines)


async def apply_changes(applier: ChangeApplier, contracts: Contracts) -> None:
    """Apply a loaded set to the live state; a failure is logged, and the same changes are
    applied again at the next start or reload."""
    try:
        await applier.apply(contracts.by_name(), contracts.matcher, contracts.version)
    except Exception:
        log.exception("contract changes of %s not applied yet; the next start or reload "
                      "applies them", contracts.version)  # fmt: skip
