"""Take one claimed trigger to its target, and record what happened.

Cases for a trigger entry read from the stream:
  1. no record, or already succeeded/failed -> ack (a redelivery after the work was done)
  2. past `retry.max_age`, or `max_attempts` spent (a crash loop) -> dead letter
  3. contract or target gone                -> dead letter, permanent
  4. templates fail to render               -> dead letter, permanent
  5. over the target's limits, or its circuit breaker open -> waits for it (gate.py)
  6. target accepts                         -> succeeded, with the downstream reference
  7. target rejects (permanent)             -> dead letter at once
  8. target unavailable (transient)         -> retry later with backoff, or wait behind
                                               the breaker it opened, or dead letter once
                                               the trigger is too old
  9. anything else raised on the way        -> dead letter, naming the error: a trigger
                                               that cannot be sent is not retried forever
A crash anywhere before the outcome is recorded leaves the entry pending; it is
reclaimed and dispatched again with the same trigger id, which targets deduplicate on.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from broker.contracts.model import Contract, contract_calendar
from broker.core.errors import TargetRejected, TargetUnavailable
from broker.core.partitions import Granularity, partition_bounds
from broker.core.secrets import Redactor, resolve
from broker.core.settings import RetrySettings
from broker.core.templates import Template, TemplateError, compile_template
from broker.dispatch.backoff import delay
from broker.dispatch.gate import Gates, created_ms
from broker.dispatch.target import Receipt, Target, TriggerRequest
from broker.matching.condition import readable_slot
from broker.state.held import trigger_inputs
from broker.state.ports import TriggerRecord, TriggerStore

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
        *,
        gates: Gates,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.store = store
        self.contracts = contracts
        self.targets = targets
        self.retry = retry
        self.clock = clock
        self.rng = rng or random.Random()
        self.gates = gates
        # The variables contracts may read as ${VAR}; their values never leave in a
        # stored error or a log line.
        self.env = dict(env or {})
        self.redactor = Redactor(self.env.values())
        # Compiling Jinja costs ~0.3 ms; each contract's trigger is compiled once, and
        # again only when a reload replaces the contract object.
        self._compiled: dict[str, tuple[Contract, Template]] = {}
        # Told the target's name when a run was started (the run tracker wakes for it).
        self.on_dispatched: Callable[[str], None] | None = None

    def _template(self, contract: Contract) -> Template:
        cached = self._compiled.get(contract.name)
        if cached is None or cached[0] is not contract:
            try:
                fields = resolve(contract.trigger.fields(), self.env)
            except KeyError as exc:  # `baton check` refuses this; the env changed since
                raise TemplateError((), f"environment variable {exc.args[0]} is not set") from exc
            cached = (contract, compile_template(fields))
            self._compiled[contract.name] = cached
        return cached[1]

    async def handle(self, entry_id: str, trigger_id: str) -> str:
        """Dispatch one trigger; returns the state it ends in (for logs and tests)."""
        started = await self.store.begin_attempt(trigger_id)
        if started is None:  # unknown, or done before this redelivery
            await self.store.ack_trigger_entry(entry_id)
            return "done"
        return await self.dispatch(entry_id, started)

    async def dispatch(
        self, entry_id: str, started: TriggerRecord, held: str | bytes | None = None
    ) -> str:
        """Dispatch a trigger whose attempt is already counted (state `dispatching`);
        `held`, the inputs it fired with as its record keeps them (JSON), read only if
        its template or its target reads them (else `started.inputs`)."""
        if (spent := self._spent(started)) is not None:  # this start makes no call
            return await self._dead(started, entry_id, spent, attempts=started.attempts - 1)
        contract = self.contracts().get(started.contract)
        if contract is None:
            return await self._dead(started, entry_id, "the contract is no longer loaded")
        name = contract.trigger.target
        target = self.targets.get(name)
        if target is None:
            return await self._dead(started, entry_id, f"unknown target {name!r}")
        try:
            template = self._template(contract)
            # Only what is read: a trigger's inputs, read back, if its template or target does.
            inputs = None
            if "inputs" in template.reads or _reads_inputs(target, contract):
                inputs = started.inputs if held is None else trigger_inputs(held)
            request = build_request(contract, started, inputs, template)
        except TemplateError as exc:
            return await self._dead(started, entry_id, f"template: {exc}")
        if self.gates.gated(name) and (why := await self.gates.admit(name, started, entry_id)):
            log.info("trigger %s waits for target %s (%s)", started.id, name, why)
            return "waiting"
        return await self._call(name, target, request, started, entry_id)

    def _spent(self, record: TriggerRecord) -> str | None:
        """Why `record` may not be tried again: too old, or its attempts spent (a
        redelivery after crashes counts each start)."""
        policy = self.policy(record.contract)
        if policy.max_attempts is not None and record.attempts > policy.max_attempts:
            return f"gave up after {record.attempts - 1} attempts (retry.max_attempts)"
        age = self.clock() - _created(record)
        if age > policy.max_age:
            return f"gave up: the trigger is {_span(age)} old (retry.max_age)"
        return None

    async def _call(
        self, name: str, target: Target, request: TriggerRequest, record: TriggerRecord,
        entry_id: str,
    ) -> str:  # fmt: skip
        try:
            receipt: Receipt = await target.trigger(request)
        except TargetRejected as exc:
            await self.gates.answered(name, record.id, started=False)
            return await self._dead(record, entry_id, str(exc), name)
        except TargetUnavailable as exc:
            return await self._unavailable(name, record, entry_id, str(exc))
        except Exception as exc:  # a bug or a value no target can send: never retried
            log.debug("trigger %s could not be sent", record.id, exc_info=True)
            error = f"could not be sent: {type(exc).__name__}: {exc}"
            return await self._dead(record, entry_id, error, name)
        await self.gates.answered(name, record.id, started=True)
        # A run over when answered is settled here, unless its `produces` are still to
        # be published (the run tracker does that, at once: see `on_dispatched`).
        contract = self.contracts().get(record.contract)
        over = receipt.finished if contract is not None and not contract.produces else None
        settled = (over.state, over.detail) if over is not None else None
        await self.store.dispatched(record.id, entry_id, receipt.ref, receipt.url,
                                    receipt.warning, name, settled)  # fmt: skip
        if self.on_dispatched is not None and settled is None:
            self.on_dispatched(name)
        log.info("dispatched %s -> %s", record.id, receipt.ref)
        if receipt.warning:
            log.warning("trigger %s: %s", record.id, receipt.warning)
        return "succeeded"

    async def _unavailable(
        self, name: str, record: TriggerRecord, entry_id: str, error: str
    ) -> str:
        if await self.gates.failed(name, record.id):
            await self.store.wait_for_target(record.id, entry_id, self.redactor.scrub(error),
                                             name, created_ms(record))  # fmt: skip
            return "waiting"
        return await self._later(record, entry_id, error, name)

    def policy(self, contract_name: str) -> RetrySettings:
        """The config's retry policy with the contract's own `retry:` fields over it."""
        contract = self.contracts().get(contract_name)
        override = contract.retry if contract is not None else None
        if override is None:
            return self.retry
        fields = override.model_dump(exclude_none=True)
        return self.retry.model_copy(update=fields) if fields else self.retry

    async def _later(
        self, record: TriggerRecord, entry_id: str, error: str, target: str = ""
    ) -> str:
        error = self.redactor.scrub(error)
        policy = self.policy(record.contract)
        wait = delay(policy, record.attempts, self.rng)
        due = self.clock() + wait
        spent = policy.max_attempts is not None and record.attempts >= policy.max_attempts
        if spent or due - _created(record) > policy.max_age:
            age = _span(self.clock() - _created(record))
            return await self._dead(
                record, entry_id, f"{error} (after {record.attempts} attempts in {age})", target
            )
        await self.store.retry_later(record.id, entry_id, error, int(due.timestamp() * 1000),
                                     target)  # fmt: skip
        log.warning("trigger %s: %s; retry in %.1fs", record.id, error, wait.total_seconds())
        return "retrying"

    async def _dead(
        self, record: TriggerRecord, entry_id: str, error: str, target: str = "",
        attempts: int | None = None,
    ) -> str:  # fmt: skip
        error = self.redactor.scrub(error)
        await self.store.dead_letter(record.id, entry_id, error, target or record.target,
                                     attempts)  # fmt: skip
        log.error("trigger %s failed for good: %s", record.id, error)
        return "failed"

    async def expire_waiting(self) -> int:
        """Dead-letter the triggers that waited for their target past `retry.max_age`
        (an outage longer than the policy allows); returns how many."""
        expired = 0
        cutoff = int((self.clock() - self.retry.max_age).timestamp() * 1000)
        for target in self.gates.gates:
            for trigger_id in await self.gates.store.waiting_since(target, cutoff):
                record = await self.store.get_trigger(trigger_id)
                if record is None:  # its record is gone: nothing to send, nor to wait for
                    await self.gates.store.forget(target, trigger_id)
                    continue
                if (why := self._spent(record)) is not None:  # else its contract allows more
                    await self._dead(record, "", f"waited for {target}: {why}", target)
                    expired += 1
        return expired


def _created(record: TriggerRecord) -> datetime:
    try:
        return datetime.fromisoformat(record.created_at)
    except ValueError:  # a record without its time: treat it as made now
        return datetime.now(UTC)


def _span(age: timedelta) -> str:
    seconds = max(0, int(age.total_seconds()))  # clocks of two hosts may disagree a little
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"


def _reads_inputs(target: Target, contract: Contract) -> bool:
    """Whether `target` reads the inputs of a request for `contract`'s trigger (one
    that does not say does)."""
    says = getattr(target, "reads_inputs", None)
    return True if says is None else bool(says(contract.trigger.fields()))


def template_context(
    contract: Contract, record: TriggerRecord, inputs: Mapping[str, Mapping[str, Any]] | None
) -> dict[str, Any]:
    """What trigger templates can read (SPEC: partition, partition_start, ..., trigger_id);
    `inputs` (the record's, slot -> event) left out when None (a trigger whose template
    and target read none)."""
    start = end = None
    if contract.partitioned not in (Granularity.NONE, Granularity.STATIC):
        start, end = partition_bounds(contract_calendar(contract), record.partition)
    return {
        "partition": record.partition or None,
        "partition_start": start.isoformat() if start else None,
        "partition_end": end.isoformat() if end else None,
        "contract": contract.name,
        "trigger_id": record.id,
        "generation": record.generation,
        "missing": [readable_slot(slot) for slot in record.missing],
    } | ({} if inputs is None else {"inputs": inputs_by_dataset(inputs)})


def inputs_by_dataset(inputs: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Slot -> event becomes dataset -> its latest event, plus `events` listing all."""
    out: dict[str, dict[str, Any]] = {}
    for event in sorted(inputs.values(), key=lambda e: str(e.get("occurred_at", ""))):
        entry = out.setdefault(event["dataset"], {"events": []})
        entry["events"].append(dict(event))
        entry.update({k: v for k, v in event.items() if k != "events"})
    return out


def build_request(
    contract: Contract,
    record: TriggerRecord,
    inputs: Mapping[str, Mapping[str, Any]] | None,
    template: Template | None = None,
) -> TriggerRequest:
    """The request for `record`'s trigger, its context as `template_context` makes it."""
    context = template_context(contract, record, inputs)
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
