"""Turn one event into the state operations it causes: pure, no I/O.

For each subscription of the event's dataset:
  1. the `where` filter rejects it        -> nothing for that input
  2. the contract is unpartitioned        -> one op on the single partition ""
  3. the event's partition does not parse -> skipped, with a reason
  4. otherwise                            -> one op per contract partition it feeds
                                             (identity, finer->coarser, coarser->finer, offset)
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache

from broker.contracts.model import Contract
from broker.events import Event
from broker.matching.condition import build_tree, slot, tree_json
from broker.matching.index import DatasetIndex, Subscription
from broker.partitions import Granularity, PartitionError, contract_keys_for_input


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


@dataclass(slots=True)
class Plan:
    ops: list[RecordOp] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def trigger_id_base(contract: str, partition: str) -> str:
    """Deterministic trigger ids: `baton:<contract>:<partition or _>:<generation>`."""
    return f"baton:{contract}:{partition or '_'}:"


def order_key(event: Event, stream_id: str) -> str:
    """Sorts events by when they happened, then by arrival, as fixed-width text."""
    assert event.occurred_at is not None
    when = event.occurred_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    ms, _, seq = stream_id.partition("-")
    return f"{when}|{int(ms):015d}-{int(seq or 0):010d}"


def slot_payload(event: Event, received_at: datetime) -> str:
    data = event.model_dump(mode="json", exclude_none=True)
    data["received_at"] = received_at.astimezone(UTC).isoformat()
    return json.dumps(data, separators=(",", ":"))


class Matcher:
    """Plans the state operations for events against one contract set."""

    def __init__(self, contracts: Iterable[Contract]) -> None:
        self.contracts = {c.name: c for c in contracts}
        self.index = DatasetIndex(self.contracts.values())
        self._tree = lru_cache(maxsize=65536)(self._build_tree)

    def _build_tree(self, name: str, partition: str) -> str:
        return tree_json(build_tree(self.contracts[name], partition))

    def plan(self, event: Event, received_at: datetime, stream_id: str) -> Plan:
        plan = Plan()
        context = _filter_context(event)
        payload = slot_payload(event, received_at)
        order = order_key(event, stream_id)
        for sub in self.index.subscribers(event.dataset):
            if sub.where is not None and not sub.where.evaluate(context):
                continue
            try:
                keys = self._contract_keys(sub, event)
            except PartitionError as exc:
                plan.skipped.append(f"{sub.contract.name}: {exc}")
                continue
            unpartitioned = sub.contract.partitioned == Granularity.NONE
            item_partition = "" if unpartitioned else (event.partition or "")
            landed = int(received_at.timestamp() * 1000)
            for key in keys:
                plan.ops.append(self._op(sub, key, item_partition, event, order, payload, landed))
        return plan

    def _contract_keys(self, sub: Subscription, event: Event) -> list[str]:
        if sub.contract.partitioned == Granularity.NONE:
            return [""]
        if event.partition is None:
            raise PartitionError(f"the event for {event.dataset} has no partition")
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


def _filter_context(event: Event) -> dict[str, object]:
    return {
        "dataset": event.dataset,
        "partition": event.partition,
        "status": event.status,
        "producer": event.producer,
        "event_id": event.event_id,
        "metadata": event.metadata,
    }
