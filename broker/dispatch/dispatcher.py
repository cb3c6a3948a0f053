"""Take one claimed trigger to its target, and record what happened.

Cases for a trigger entry read from the stream:
  1. no record, or already succeeded/failed -> ack (a redelivery after the work was done)
  2. contract or target gone                -> dead letter, permanent
  3. templates fail to render               -> dead letter, permanent
  4. target accepts                         -> succeeded, with the downstream reference
  5. target rejects (permanent)             -> dead letter at once
  6. target unavailable (transient)         -> retry later with backoff, or dead letter
                                               once the attempts are spent
A crash anywhere before the outcome is recorded leaves the entry pending; it is
reclaimed and dispatched again with the same trigger id, which targets deduplicate on.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from broker.contracts.model import Contract
from broker.dispatch.backoff import delay
from broker.dispatch.target import Receipt, Target, TriggerRequest
from broker.errors import TargetRejected, TargetUnavailable
from broker.matching.condition import contract_calendar, readable_slot
from broker.partitions import Granularity, partition_bounds
from broker.settings import RetrySettings
from broker.state.ports import TriggerRecord, TriggerStore
from broker.templates import Template, TemplateError, compile_template

log = logging.getLogger("baton.dispatch")


class Dispatcher:
    def __init__(
        self,
        store: TriggerStore,
        contracts: Callable[[], Mapping[str, Contract]],
        targets: Mapping[str, Target],
        retry: RetrySettings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.contracts = contracts
        self.targets = targets
        self.retry = retry
        self.clock = clock
        self.rng = rng or random.Random()
        # Compiling Jinja costs ~0.3 ms; each contract's trigger is compiled once, and
        # again only when a reload replaces the contract object.
        self._compiled: dict[str, tuple[Contract, Template]] = {}

    def _template(self, contract: Contract) -> Template:
        cached = self._compiled.get(contract.name)
        if cached is None or cached[0] is not contract:
            cached = (contract, compile_template(contract.trigger.fields()))
            self._compiled[contract.name] = cached
        return cached[1]

    async def handle(self, entry_id: str, trigger_id: str) -> str:
        """Dispatch one trigger; returns the state it ends in (for logs and tests)."""
        started = await self.store.begin_attempt(trigger_id)
        if started is None:  # unknown, or done before this redelivery
            await self.store.ack_trigger_entry(entry_id)
            return "done"
        return await self.dispatch(entry_id, started)

    async def dispatch(self, entry_id: str, started: TriggerRecord) -> str:
        """Dispatch a trigger whose attempt is already counted (state `dispatching`)."""
        contract = self.contracts().get(started.contract)
        if contract is None:
            return await self._dead(started, entry_id, "the contract is no longer loaded")
        target = self.targets.get(contract.trigger.target)
        if target is None:
            return await self._dead(
                started, entry_id, f"unknown target {contract.trigger.target!r}"
            )
        try:
            request = build_request(contract, started, self._template(contract))
        except TemplateError as exc:
            return await self._dead(started, entry_id, f"template: {exc}")
        return await self._call(target, request, started, entry_id)

    async def _call(
        self, target: Target, request: TriggerRequest, record: TriggerRecord, entry_id: str
    ) -> str:
        try:
            receipt: Receipt = await target.trigger(request)
        except TargetRejected as exc:
            return await self._dead(record, entry_id, str(exc))
        except TargetUnavailable as exc:
            return await self._later(record, entry_id, str(exc))
        await self.store.dispatched(record.id, entry_id, receipt.ref, receipt.url, receipt.warning)
        log.info("dispatched %s -> %s", record.id, receipt.ref)
        if receipt.warning:
            log.warning("trigger %s: %s", record.id, receipt.warning)
        return "succeeded"

    def policy(self, contract_name: str) -> RetrySettings:
        """The config's retry policy with the contract's own `retry:` fields over it."""
        contract = self.contracts().get(contract_name)
        override = contract.retry if contract is not None else None
        if override is None:
            return self.retry
        fields = override.model_dump(exclude_none=True)
        return self.retry.model_copy(update=fields) if fields else self.retry

    async def _later(self, record: TriggerRecord, entry_id: str, error: str) -> str:
        policy = self.policy(record.contract)
        if record.attempts >= policy.max_attempts:
            return await self._dead(record, entry_id, f"{error} (after {record.attempts} attempts)")
        wait = delay(policy, record.attempts, self.rng)
        due = self.clock() + wait
        await self.store.retry_later(record.id, entry_id, error, int(due.timestamp() * 1000))
        log.warning("trigger %s: %s; retry in %.1fs", record.id, error, wait.total_seconds())
        return "retrying"

    async def _dead(self, record: TriggerRecord, entry_id: str, error: str) -> str:
        await self.store.dead_letter(record.id, entry_id, error)
        log.error("trigger %s failed for good: %s", record.id, error)
        return "failed"


def template_context(contract: Contract, record: TriggerRecord) -> dict[str, Any]:
    """What trigger templates can read (SPEC: partition, partition_start, ..., trigger_id)."""
    start = end = None
    if contract.partitioned not in (Granularity.NONE, Granularity.STATIC):
        start, end = partition_bounds(contract_calendar(contract), record.partition)
    return {
        "partition": record.partition or None,
        "partition_start": start.isoformat() if start else None,
        "partition_end": end.isoformat() if end else None,
        "inputs": inputs_by_dataset(record.inputs),
        "contract": contract.name,
        "trigger_id": record.id,
        "generation": record.generation,
        "missing": [readable_slot(slot) for slot in record.missing],
    }


def inputs_by_dataset(inputs: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Slot -> event becomes dataset -> its latest event, plus `events` listing all."""
    out: dict[str, dict[str, Any]] = {}
    for event in sorted(inputs.values(), key=lambda e: str(e.get("occurred_at", ""))):
        entry = out.setdefault(event["dataset"], {"events": []})
        entry["events"].append(dict(event))
        entry.update({k: v for k, v in event.items() if k != "events"})
    return out


def build_request(
    contract: Contract, record: TriggerRecord, template: Template | None = None
) -> TriggerRequest:
    context = template_context(contract, record)
    compiled = template or compile_template(contract.trigger.fields())
    spec = compiled.render(context)
    return TriggerRequest(
        trigger_id=record.id,
        contract=contract.name,
        partition=record.partition,
        generation=record.generation,
        spec=spec,
        context=context,
    )
