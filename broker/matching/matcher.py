"""Turn one event into the state operations it causes: pure, no I/O.

For each subscription of the event's dataset:
  1. the `where` filter rejects it        -> nothing for that input, but a `Refusal`
                                             per partition it would have fed (explain)
  2. the contract is unpartitioned        -> one op on the single partition ""
  3. the event's partition does not parse -> skipped, with a reason
  4. otherwise                            -> one op per contract partition it feeds
                                             (identity, finer->coarser, coarser->finer, offset)
                                             that the contract's `partitions` allow

`plan` makes the ops (the worker); `route` answers, from the same cases, which
contracts an event feeds and why it cannot feed the others (the API's 202 answer).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache, partial
from operator import attrgetter
from typing import Literal, NamedTuple

from broker.contracts.model import Contract
from broker.core.events import Event, epoch_ms
from broker.core.partitions import Granularity, PartitionError, contract_keys_for_input
from broker.matching.condition import build_tree, fill, slot, tree_json, tree_shape
from broker.matching.index import DatasetIndex, Subscription


@dataclass(frozen=True, slots=True)
class RecordOp:
    """Record `event` in slot `slot` of (contract, partition), then evaluate `tree`."""

    contract: str
    partition: str
    slot: str
    tree: str
    partitioned: bool
    restatement: str
    event_id: str
    status: str
    order: str
    payload: str
    # When the event landed (epoch ms), and the contract's `within` window (0: none).
    landed_ms: int = 0
    within_ms: int = 0
    # The event says it re-publishes history (metadata `backfill: true`): no deadline alerts.
    muted: bool = False


@dataclass(frozen=True, slots=True)
class Refusal:
    """A `where` refused `event_id` for slot `slot` of (contract, partition): kept so
    that `explain` can say an event came and which rule said no."""

    contract: str
    partition: str
    slot: str
    event_id: str
    occurred_at: str
    where: str


@dataclass(slots=True)
class Plan:
    ops: list[RecordOp] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)


def trigger_id_base(contract: str, partition: str) -> str:
    """Deterministic trigger ids: `baton:<contract>:<partition or _>:<generation>`."""
    return f"baton:{contract}:{partition or '_'}:"


def order_key(event: Event, stream_id: str) -> str:
    """Sorts events by when they happened, then by arrival: `<occurred>|<ms>-<seq>`,
    the arrival part the stream id, `<occurred>` empty when the event occurred as it
    arrived (to the ms) and `<epoch s>.<us>` otherwise (lua/lib/kept.lua compares them)."""
    assert event.occurred_at is not None
    ms, _, seq = stream_id.partition("-")
    arrival = f"{int(ms)}-{int(seq or 0)}"
    us = (event.occurred_at - _EPOCH) // _US
    if us == int(ms) * 1000:
        return f"|{arrival}"
    second, micro = divmod(us, 1_000_000)
    return f"{second}.{micro:06d}|{arrival}"


_EPOCH, _US = datetime(1970, 1, 1, tzinfo=UTC), timedelta(microseconds=1)


def slot_payload(event: Event, received_at: datetime, partition: str) -> str:
    """The rest of the event as slot `partition` of its dataset keeps it (state/held.py):
    without its event_id, dataset, received_at (all kept beside it), its defaults, an
    `occurred_at` that is its `received_at`, or a partition that is the slot's."""
    data = event.model_dump(
        mode="json", exclude_none=True, exclude_defaults=True,
        exclude={"event_id", "dataset", "partition"},
    )  # fmt: skip
    if event.occurred_at == received_at:
        del data["occurred_at"]
    if (event.partition or "") != partition:
        data["partition"] = event.partition
    return json.dumps(data, separators=(",", ":"))


def _build_tree(
    contracts: dict[str, Contract], shapes: dict[str, str | None], name: str, partition: str
) -> str:
    """The tree of `name` for `partition`: its shape filled in where it has one (a
    partition never seen before costs ~0.5 us so, against ~21 us built)."""
    if name in shapes:
        shape = shapes[name]
    else:
        if len(shapes) >= _SHAPES_KEPT:
            shapes.clear()
        shape = shapes[name] = tree_shape(contracts[name])
    if shape is None:
        return tree_json(build_tree(contracts[name], partition))
    return fill(shape, partition)


_SHAPES_KEPT = 65536


_NAME = attrgetter("name")


class Matcher:
    """Plans the state operations for events against one contract set."""

    def __init__(
        self, contracts: Iterable[Contract], previous: Matcher | None = None,
        changed: list[Contract] | None = None,
    ) -> None:  # fmt: skip
        """With the `previous` set's matcher, only what changed is indexed again (the
        `changed` contracts, when the caller knows them)."""
        listed = list(contracts)
        self.contracts = dict(zip(map(_NAME, listed), listed, strict=True))
        self.index: DatasetIndex = DatasetIndex(
            self.contracts, previous.index if previous else None, changed
        )
        # Over the contracts, not `self`: a matcher in a cycle with its own cache would
        # outlive its set (loaded.py freezes what a load leaves for the collector).
        self._tree = lru_cache(maxsize=65536)(partial(_build_tree, self.contracts, {}))
        # Where no `where` reads the event, its route depends on dataset and partition
        # alone: a batch of one day's events is routed once, not once an event.
        self._routes: dict[tuple[str, str | None], Route] = {}

    def plan(self, event: Event, received_at: datetime, stream_id: str) -> Plan:
        plan = Plan()
        context = _filter_context(event)
        # The event as a slot keeps it, by the slot's partition: the event's, or none
        # (an unpartitioned contract's); each made once.
        own = event.partition or ""
        payloads = {own: slot_payload(event, received_at, own)}
        order = order_key(event, stream_id)
        landed = epoch_ms(received_at)
        for sub in self.index.subscribers(event.dataset):
            reach = self._reach(sub, event, context)
            if isinstance(reach, Miss):
                if reach.case == "unfit":  # a filter or `partitions` is routine: no line
                    plan.skipped.append(reach.reason)
                elif reach.case == "filtered":
                    plan.refused += self._refusals(sub, event)
                continue
            item_partition = _item_partition(sub, event)
            kept = payloads.get(item_partition)
            if kept is None:
                kept = payloads[item_partition] = slot_payload(event, received_at, item_partition)
            for key in reach:
                plan.ops.append(self._op(sub, key, item_partition, event, order, kept, landed))
        return plan

    def route(self, event: Event) -> Route:
        """Which contracts `event` feeds, and for each contract reading its dataset that
        it cannot feed, why (contract None: no contract reads it). Cheap: no ops made,
        and the same answer kept for events no filter tells apart (read it, never
        change it)."""
        subs = self.index.subscribers(event.dataset)
        if any(sub.where is not None for sub in subs):
            return self._route(event, subs)
        key = (event.dataset, event.partition)
        found = self._routes.get(key)
        if found is None:
            if len(self._routes) >= _ROUTES_KEPT:
                self._routes.clear()
            found = self._routes[key] = self._route(event, subs)
        return found

    def _route(self, event: Event, subs: list[Subscription]) -> Route:
        if not subs:
            return Route([], [(None, f"no contract reads {event.dataset}", "no_reader")])
        context = _filter_context(event)
        feeds: dict[str, None] = {}
        misses: dict[str, list[Miss]] = {}
        for sub in subs:
            reach = self._reach(sub, event, context)
            if isinstance(reach, Miss):
                misses.setdefault(sub.contract.name, []).append(reach)
            else:
                feeds[sub.contract.name] = None
        # A contract fed through one of its inputs is fed, whatever its others say.
        cannot: list[tuple[str | None, str, str]] = [
            (name, "; ".join(m.reason for m in why), _kind(why))
            for name, why in sorted(misses.items())
            if name not in feeds
        ]
        return Route(sorted(feeds), cannot)

    def _reach(
        self, sub: Subscription, event: Event, context: dict[str, object]
    ) -> list[str] | Miss:
        """The contract partitions `event` feeds through `sub`, or why it feeds none."""
        if sub.where is not None and not sub.where.evaluate(context):  # case 1
            return Miss("filtered", f"{_reads(sub)} only where {sub.input.where}, and this event "
                           "does not match")  # fmt: skip
        try:
            keys = self._contract_keys(sub, event)  # cases 2 and 4
        except PartitionError as exc:  # case 3
            return Miss("unfit", f"{_reads(sub)} {_grain(sub)}: {exc}")
        if not keys:  # case 4, outside the contract's `partitions`
            allowed = sub.contract.partitions or ()
            shown = ", ".join(allowed[:5]) + (", ..." if len(allowed) > 5 else "")
            return Miss("outside", f"{sub.contract.name} runs only for the partitions {shown}; "
                           f"{event.partition!r} feeds none of them")  # fmt: skip
        return keys

    def _refusals(self, sub: Subscription, event: Event) -> list[Refusal]:
        """The partitions `event` would have fed, had the filter not refused it."""
        try:
            keys = self._contract_keys(sub, event)
        except PartitionError:
            return []
        assert event.event_id is not None and event.occurred_at is not None
        name = slot(event.dataset, _item_partition(sub, event), sub.input.where)
        when = event.occurred_at.isoformat().replace("+00:00", "Z")  # as the event shows it
        return [Refusal(sub.contract.name, key, name, event.event_id, when, sub.input.where or "")
                for key in keys]  # fmt: skip

    def _contract_keys(self, sub: Subscription, event: Event) -> list[str]:
        if sub.contract.partitioned == Granularity.NONE:
            return [""]
        if event.partition is None:
            raise PartitionError("the event has no partition")
        keys = contract_keys_for_input(
            sub.contract_calendar, sub.input_calendar, event.partition, sub.input.offset
        )
        allowed = sub.contract.partitions
        return [k for k in keys if k in allowed] if allowed else keys

    def _op(
        self, sub: Subscription, key: str, item: str, event: Event, order: str, payload: str,
        landed_ms: int,
    ) -> RecordOp:  # fmt: skip
        contract = sub.contract
        assert event.event_id is not None
        return RecordOp(
            contract=contract.name,
            partition=key,
            slot=slot(event.dataset, item, sub.input.where),
            tree=self._tree(contract.name, key),
            partitioned=contract.partitioned != Granularity.NONE,
            restatement=contract.on_restatement,
            event_id=event.event_id,
            status=event.status,
            order=order,
            payload=payload,
            landed_ms=landed_ms,
            muted=event.metadata.get("backfill") is True,
            within_ms=int(contract.within.total_seconds() * 1000) if contract.within else 0,
        )


_ROUTES_KEPT = 65536


class Route(NamedTuple):
    """What `Matcher.route` answers: the contracts fed, and (contract, why, kind) for
    each it cannot feed. Kinds: `no_reader` (no contract reads the dataset) and
    `bad_partition` (a key of the wrong shape, or none) look like a producer's
    mistake; `filtered` (a `where` said no) and `not_listed` (outside a static
    contract's partitions) are routine."""

    feeds: list[str]
    cannot: list[tuple[str | None, str, str]]


_KINDS = {"unfit": "bad_partition", "filtered": "filtered", "outside": "not_listed"}


def _kind(misses: list[Miss]) -> str:
    """One kind for a contract that several inputs miss: the mistake, if any is one."""
    cases = {m.case for m in misses}
    return _KINDS["unfit" if "unfit" in cases else misses[0].case]


class Miss(NamedTuple):
    """Why a subscription takes nothing of an event, for people; `case`: which of the
    module docstring's (filtered: 1, unfit: 3, outside the allowed partitions: 4)."""

    case: Literal["filtered", "unfit", "outside"]
    reason: str


def _item_partition(sub: Subscription, event: Event) -> str:
    """The input partition an event fills: none when the contract is unpartitioned."""
    return "" if sub.contract.partitioned == Granularity.NONE else (event.partition or "")


def _reads(sub: Subscription) -> str:
    return f"{sub.contract.name} reads {sub.input.dataset}"


def _grain(sub: Subscription) -> str:
    calendar = sub.input_calendar
    grain = "by static key" if calendar.granularity == Granularity.STATIC else calendar.granularity
    return f"{grain} in {calendar.tz}" if calendar.tz != "UTC" and calendar.is_time else grain


def _filter_context(event: Event) -> dict[str, object]:
    return {
        "dataset": event.dataset,
        "partition": event.partition,
        "status": event.status,
        "producer": event.producer,
        "event_id": event.event_id,
        "metadata": event.metadata,
    }
