"""Answer "why hasn't my pipeline run?" for one contract partition.

Lists every input slot the partition needs: satisfied (by which event, when), failed,
or missing (and, when an event came that a `where` refused, which one and by what
rule); whether the condition holds; the trigger with its state; and the deadline, with
the alert sent when it passed unmet. `explain` is pure; `explain_from_store` reads what
it needs from Redis first.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from broker.contracts.model import Contract
from broker.core.partitions import PartitionError
from broker.matching.condition import build_tree, holds, leaves, split_slot
from broker.matching.matcher import trigger_id_base
from broker.state.ports import PartitionState, TriggerRecord
from broker.state.redis_store import RedisStore
from broker.time.deadlines import deadline_at


@dataclass(frozen=True, slots=True)
class InputStatus:
    dataset: str
    partition: str
    state: str  # satisfied | missing | failed | consumed | expired (outside `within`)
    event_id: str | None = None
    occurred_at: str | None = None
    received_at: str | None = None
    failed_event_id: str | None = None
    # The latest event a `where` refused for this input (unless it is satisfied).
    refused_event_id: str | None = None
    refused_occurred_at: str | None = None
    refused_by: str | None = None


@dataclass(frozen=True, slots=True)
class Explanation:
    contract: str
    partition: str
    condition_holds: bool
    generation: int
    inputs: list[InputStatus]
    trigger: dict[str, Any] | None = None
    missing: list[str] = field(default_factory=list)
    # When the partition must have fired, and the alert sent when it had not.
    deadline: str | None = None
    deadline_alert: dict[str, Any] | None = None
    # What is past the history window (`history_retention`), when something is: the
    # partition's state, its trigger's record, or the state before a restatement.
    expired: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def explain(
    contract: Contract,
    partition: str,
    state: PartitionState,
    trigger: TriggerRecord | None,
    alert: dict[str, Any] | None = None,
    now: datetime | None = None,
    refused: Mapping[str, Mapping[str, Any]] | None = None,
    marker: tuple[int, int] | None = None,
) -> Explanation:
    """`marker`: the partition's fired-marker (generation, epoch ms), read when its
    state is gone or was put back from it."""
    tree = build_tree(contract, partition)
    unpartitioned = contract.partitioned == "none"
    present = {s for s in state.successes if not (unpartitioned and s in state.consumed)}
    if contract.within and state.fired < state.generation:
        # Waiting: an input that landed longer than `within` ago no longer counts.
        oldest = (now or datetime.now(UTC)) - contract.within
        expired = {s for s in present if _landed(state.successes[s]) < oldest}
        present -= expired
    else:
        expired = set()
    inputs = [_status(s, state, present, expired, (refused or {}).get(s)) for s in leaves(tree)]
    return Explanation(
        contract=contract.name,
        partition=partition,
        condition_holds=holds(tree, present),
        generation=state.generation,
        inputs=inputs,
        trigger=_trigger(trigger),
        missing=[f"{i.dataset}" + (f"[{i.partition}]" if i.partition else "")
                 for i in inputs if i.state != "satisfied"],
        deadline=_deadline(contract, partition),
        deadline_alert=alert,
        expired=_expired(contract.name, partition, state, trigger, marker),
    )  # fmt: skip


async def explain_from_store(
    store: RedisStore, contract: Contract, partition: str
) -> dict[str, Any]:
    """The explanation of a partition as stored now, as the API and `baton explain` show it."""
    state = await store.read_partition(contract.name, partition)
    trigger = await store.get_trigger(state.trigger_id) if state.trigger_id else None
    alert = await store.deadlines.alert_of(contract.name, partition)
    refused = await store.refusals.of(contract.name, partition)
    marker = None
    if state.empty or state.restored_from:
        marker = await store.fired_marker(contract.name, partition)
    return explain(contract, partition, state, trigger, alert, refused=refused,
                   marker=marker).as_dict()  # fmt: skip


def _expired(
    contract: str, partition: str, state: PartitionState, trigger: TriggerRecord | None,
    marker: tuple[int, int] | None,
) -> dict[str, Any] | None:  # fmt: skip
    """What is past the history window: {what, and what the fired-marker still knows}."""
    if state.empty and marker is not None:
        gen, ms = marker
        return {"what": "state", "fired_generation": gen, "fired_at": _iso(ms),
                "trigger_id": f"{trigger_id_base(contract, partition)}{gen}"}  # fmt: skip
    if state.restored_from:
        last, at = state.restored_from
        gone = {"trigger_id": state.trigger_id} if state.trigger_id and trigger is None else {}
        return {"what": "earlier state", "fired_generation": last, "fired_at": _iso(at),
                **gone}  # fmt: skip
    if state.trigger_id and trigger is None:
        return {"what": "trigger", "trigger_id": state.trigger_id}
    return None


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def _deadline(contract: Contract, partition: str) -> str | None:
    try:
        found = deadline_at(contract, partition)
    except PartitionError:
        return None
    return found.isoformat() if found else None


def _landed(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(event.get("received_at") or "1970-01-01T00:00:00+00:00"))


def _status(
    slot: str, state: PartitionState, present: set[str], expired: set[str],
    refused: Mapping[str, Any] | None,
) -> InputStatus:  # fmt: skip
    dataset, partition = split_slot(slot)
    success = state.successes.get(slot)
    failure = state.failures.get(slot)
    if slot in present and success:
        kind = "satisfied"
    elif slot in expired:
        kind = "expired"
    elif success:
        kind = "consumed"
    else:
        kind = "failed" if failure else "missing"
    return InputStatus(
        dataset=dataset,
        partition=partition,
        state=kind,
        event_id=success.get("event_id") if success else None,
        occurred_at=success.get("occurred_at") if success else None,
        received_at=success.get("received_at") if success else None,
        failed_event_id=failure.get("event_id") if failure else None,
        **_refusal(refused if kind != "satisfied" else None),
    )


def _refusal(refused: Mapping[str, Any] | None) -> dict[str, str | None]:
    if not refused:
        return {}
    return {
        "refused_event_id": refused.get("event_id"),
        "refused_occurred_at": refused.get("occurred_at"),
        "refused_by": refused.get("where"),
    }


def _trigger(record: TriggerRecord | None) -> dict[str, Any] | None:
    if record is None:
        return None
    data = asdict(record)
    data.pop("inputs")
    return data


def render_report(report: Mapping[str, Any]) -> str:
    """`render_text` of an explanation as `explain_from_store` gives it (a dict)."""
    data = dict(report)
    inputs = [InputStatus(**i) for i in data.pop("inputs")]
    return render_text(Explanation(**data, inputs=inputs))


def render_text(exp: Explanation) -> str:
    """A person's view of an explanation."""
    title = f"{exp.contract} [{exp.partition or 'unpartitioned'}]"
    lines = [title, f"  condition holds: {'yes' if exp.condition_holds else 'no'}"]
    for item in exp.inputs:
        where = f"[{item.partition}]" if item.partition else ""
        lines.append(f"  {item.state:<9} {item.dataset}{where} {_input_detail(item)}".rstrip())
    if exp.expired and exp.expired["what"] == "earlier state":
        lines.append(
            f"  expired: what came before generation {exp.generation} (generation "
            f"{exp.expired['fired_generation']} fired at {exp.expired['fired_at']})"
        )
    if exp.trigger is None and exp.expired and exp.expired["what"] == "state":
        lines.append(
            f"  expired: this partition's state is past the history window; it fired "
            f"generation {exp.expired['fired_generation']} at {exp.expired['fired_at']}"
        )
    lines.append(_trigger_line(exp.trigger, exp.expired))
    if exp.deadline:
        lines.append(_deadline_line(exp))
    return "\n".join(lines)


def _input_detail(item: InputStatus) -> str:
    parts = [f"event {item.event_id} at {item.occurred_at}" if item.event_id else ""]
    if item.failed_event_id and item.state != "satisfied":
        parts.append(f"(last failure: {item.failed_event_id})")
    if item.refused_event_id:
        parts.append(f"(event {item.refused_event_id} at {item.refused_occurred_at} came, "
                     f"refused by where: {item.refused_by})")  # fmt: skip
    return " ".join(p for p in parts if p)


def _deadline_line(exp: Explanation) -> str:
    alert = exp.deadline_alert
    if alert is None:
        met = exp.trigger or (exp.expired and "trigger_id" in exp.expired)
        state = "met" if met else "not passed yet, or not looked at yet"
    else:
        state = f"missed, alerted at {alert['alerted_at']}"
        if alert.get("recovered_at"):
            state += f"; recovered at {alert['recovered_at']} by {alert['trigger_id']}"
    return f"  deadline: {exp.deadline} ({state})"


def _trigger_line(trigger: dict[str, Any] | None, expired: dict[str, Any] | None) -> str:
    if trigger is None and expired and "trigger_id" in expired:
        return f"  trigger: {expired['trigger_id']} expired (its record is past the history window)"
    if trigger is None:
        return "  trigger: none yet"
    text = f"  trigger: {trigger['id']} {trigger['state']} (attempts {trigger['attempts']})"
    if trigger.get("downstream_ref"):
        text += f" -> {trigger['downstream_ref']}"
    if trigger.get("last_error"):
        text += f"\n  last error: {trigger['last_error']}"
    if trigger.get("contract_version"):
        text += f"\n  fired under contracts version {trigger['contract_version']}"
    return text


def to_json(exp: Explanation) -> str:
    return json.dumps(exp.as_dict(), indent=2)
