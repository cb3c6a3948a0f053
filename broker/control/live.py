"""The live state a contract change touches, and its partitions evaluated again.

What Redis holds of a contract: its partition hashes (`Held`: the inputs recorded, the
generation, the last firing), its place on the deadline clock, and the record of applied
definitions and removed contracts (`LiveState`). A waiting partition is one with inputs
that has not fired in its generation; `reevaluate_waiting` evaluates such partitions
again with the inputs they hold, so what now holds fires once, and `would_fire` is the
same question asked as a dry run, changing nothing (for `baton diff`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from broker.contracts.model import Contract
from broker.core.events import epoch_ms
from broker.core.partitions import PartitionError
from broker.matching.condition import build_tree, holds
from broker.matching.matcher import Matcher, RecordOp
from broker.state.deadline_store import split_member
from broker.state.held import Input, held_inputs
from broker.state.redis_store import RedisStore
from broker.state.util import text
from broker.time.deadlines import deadline_at


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
        slots = held_inputs(self.fields)
        if not slots:
            return False
        if partitioned:
            return self.fired < self.generation
        return any(f"c:{s}" not in self.fields for s in slots)

    def events(self) -> dict[str, Input]:
        """event id -> the input held, for each input held."""
        return {i.event_id: i for i in held_inputs(self.fields).values()}


class LiveState:
    """Reads what the changes touch: partition hashes, the deadline clock, and the
    record of applied definitions and removed contracts."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self.redis = store.redis
        self.defs_key = store.keys.contracts_applied
        self.defs_version_key = store.keys.contracts_applied_version
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

    async def applied_of(self, names: list[str]) -> dict[str, dict[str, str]]:
        """`applied` of the contracts `names` only (those recorded)."""
        if not names:
            return {}
        raw: Any = await self.redis.hmget(self.defs_key, names)
        return {n: json.loads(v) for n, v in zip(names, raw, strict=True) if v is not None}

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
    events: dict[str, Input] = {}
    for held in waiting:
        events.update(held.events())
    ops = []
    for held_input in events.values():
        try:
            event, received_at = held_input.parsed()
        except (KeyError, ValueError):
            continue  # not readable as an event: nothing to match again
        plan = matcher.plan(event, received_at, f"{epoch_ms(received_at)}-0")
        ops += [replace(op, order=held_input.order or op.order) for op in plan.ops
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
                slot: i.landed_ms
                for slot, i in held_inputs(h.fields).items()
                if partitioned or f"c:{slot}" not in h.fields
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


def deadline_ms(contract: Contract, partition: str) -> int | None:
    """Where `partition` belongs on the deadline clock under `contract` as it now reads
    (ms); None when it is off the clock (no deadline, or no place in its partitioning)."""
    try:
        when = deadline_at(contract, partition)
    except PartitionError:
        return None
    return None if when is None else int(when.timestamp() * 1000)
