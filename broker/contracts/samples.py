"""A sample partition and the template context a trigger would see for it.

`baton check` renders every trigger for this sample, and `baton check --online` sends
the rendered request to the target's own validation: the latest complete partition,
with inputs that carry no metadata.
"""

from __future__ import annotations

from datetime import UTC, datetime

from broker.contracts.model import Contract, contract_calendar, iter_inputs
from broker.core.partitions import Granularity, partition_bounds


def sample_partition(contract: Contract, now: datetime | None = None) -> str:
    """The latest complete partition (yesterday for a daily contract), or a static key."""
    if contract.partitioned == Granularity.NONE:
        return ""
    if contract.partitioned == Granularity.STATIC:
        return contract.partitions[0] if contract.partitions else "sample"
    calendar = contract_calendar(contract)
    current = calendar.key_of(now or datetime.now(UTC))
    return calendar.shift(current, -1)


def sample_context(contract: Contract, partition: str) -> dict[str, object]:
    start = end = None
    if contract.partitioned not in (Granularity.NONE, Granularity.STATIC):
        start, end = partition_bounds(contract_calendar(contract), partition)
    inputs: dict[str, dict[str, object]] = {
        item.dataset: {"dataset": item.dataset, "partition": partition or None,
                       "status": "success", "event_id": "sample", "metadata": {}, "events": []}
        for item in iter_inputs(contract.when)
    }  # fmt: skip
    return {
        "partition": partition or None,
        "partition_start": start.isoformat() if start else None,
        "partition_end": end.isoformat() if end else None,
        "inputs": inputs,
        "contract": contract.name,
        "trigger_id": f"baton:{contract.name}:{partition or '_'}:0",
        "generation": 0,
    }
