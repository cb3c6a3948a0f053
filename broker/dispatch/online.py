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

from broker.contracts.loader import ContractSet, LoadedContract
from broker.contracts.samples import sample_context, sample_partition
from broker.core.errors import ContractError
from broker.core.templates import TemplateError, compile_template
from broker.dispatch.target import Target


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
