"""`baton check --online`: ask the live targets whether each trigger would work.

The offline check proves a contract well-formed; this one asks the orchestrator it
names: the DAG / job / deployment exists, the Prefect parameters fit the deployment,
the Dagster run config is valid (Dagster validates it without launching), the
credentials work. The trigger is rendered for a sample partition (the latest complete
one) with inputs that carry no metadata; a field that reads metadata is unknown until
run time, so it goes to the target as null and is named in a note.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from broker.contracts.loader import ContractSet, LoadedContract
from broker.contracts.model import Contract, iter_inputs
from broker.dispatch.target import Target
from broker.errors import ContractError
from broker.matching.condition import contract_calendar
from broker.partitions import Granularity, partition_bounds
from broker.templates import TemplateError, compile_template


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


async def check_online(
    contract_set: ContractSet, targets: Mapping[str, Target]
) -> tuple[list[ContractError], list[str]]:
    """Problems the live targets report, as `file:line: message`; and notes."""
    errors: list[ContractError] = []
    notes: list[str] = []
    for loaded in contract_set.contracts:
        found, noted = await _check_one(loaded, targets)
        errors += found
        notes += noted
    return errors, notes


async def _check_one(
    loaded: LoadedContract, targets: Mapping[str, Target]
) -> tuple[list[ContractError], list[str]]:
    contract = loaded.contract
    target = targets.get(contract.trigger.target)
    where = loaded.at("trigger")
    if target is None:
        return [ContractError(where, f"unknown target {contract.trigger.target!r}")], []
    partition = sample_partition(contract)
    try:
        spec, unknown = compile_template(contract.trigger.fields()).render_sample(
            sample_context(contract, partition)
        )
    except TemplateError as exc:
        return [ContractError(where, f"trigger does not render: {exc}")], []
    notes = [
        f"{where}: {contract.name}: trigger.{path} reads event data; checked as null"
        for path in unknown
    ]
    problems = await target.check(spec)
    return [ContractError(where, f"{contract.name}: {p}") for p in problems], notes
