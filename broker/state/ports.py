"""The seams between Baton's logic and its storage: small Protocols and plain records.

Matching and dispatch depend on these, never on redis; `redis_store` implements them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from broker.core.events import SEP
from broker.matching.matcher import RecordOp
from broker.state.held import ms_iso, trigger_inputs

StreamEntry = tuple[str, dict[str, str]]


@dataclass(frozen=True, slots=True)
class RecordOutcome:
    outcome: str  # fired | recorded | duplicate | stale | ignored | failed
    trigger_id: str | None
    generation: int
    # Set when the claim also delivered a trigger entry to this worker (see record.lua).
    delivered_entry: str | None = None
    delivered_trigger: str | None = None
    inputs: str | None = None
    # When the script ran (ISO): a trigger it claimed was created then.
    at: str = ""

    @property
    def delivered_own(self) -> bool:
        """The entry delivered is the trigger just claimed, its first attempt counted."""
        return self.delivered_entry is not None and self.delivered_trigger == self.trigger_id


@dataclass(frozen=True, slots=True)
class PartitionState:
    """One contract partition as stored: latest success and failed event per slot."""

    generation: int
    fired: int
    trigger_id: str | None
    successes: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: dict[str, dict[str, Any]] = field(default_factory=dict)
    consumed: frozenset[str] = frozenset()
    # Put back from its fired-marker (generation, epoch ms) after the state before expired.
    restored_from: tuple[int, int] | None = None
    # No state at all: never written, or expired (then its fired-marker may say more).
    empty: bool = False


@dataclass(frozen=True, slots=True)
class TriggerRecord:
    id: str
    contract: str
    partition: str
    generation: int
    state: str  # pending | dispatching | retrying | succeeded | failed
    attempts: int
    created_at: str
    updated_at: str
    # slot -> the event it was fired with; a settled trigger keeps only `input_ids`
    # (settle.lua): its request has been rendered from them.
    inputs: dict[str, dict[str, Any]]
    contract_version: str = ""
    last_error: str = ""
    downstream_ref: str = ""
    downstream_url: str = ""
    warning: str = ""
    run_state: str = ""  # the downstream run: queued | running | succeeded | failed | unknown
    run_detail: str = ""
    run_checks: int = 0
    # Inputs still missing when `on_deadline: trigger` fired it at its deadline.
    missing: list[str] = field(default_factory=list)
    # The target it was admitted to, and while it waits for it: why (a limit, its
    # circuit breaker).
    target: str = ""
    waiting_for: str = ""
    # slot -> the id of the event it was fired with (kept after it settles).
    input_ids: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_hash(cls, data: dict[str, str], trigger_id: str) -> TriggerRecord:
        """The record kept in hash `data` of trigger `trigger_id` (times kept as epoch
        ms are given as ISO, as those an earlier Baton kept are)."""
        inputs = trigger_inputs(data.get("inputs"))
        contract, partition, generation = named_by(trigger_id)
        return cls(
            id=trigger_id,
            contract=data.get("contract", contract),
            partition=data.get("partition", partition),
            generation=int(data.get("generation", generation)),
            state=data.get("state", "pending"),
            attempts=int(data.get("attempts", 0)),
            created_at=_when(data.get("created_at", "")),
            updated_at=_when(data.get("updated_at", "")),
            inputs=inputs,
            contract_version=data.get("contract_version", ""),
            last_error=data.get("last_error", ""),
            downstream_ref=data.get("downstream_ref", ""),
            downstream_url=data.get("downstream_url", ""),
            warning=data.get("warning", ""),
            run_state=data.get("run_state", ""),
            run_detail=data.get("run_detail", ""),
            run_checks=int(data.get("run_checks", 0)),
            missing=_list(data.get("missing")),
            target=data.get("target", ""),
            waiting_for=data.get("waiting_for", ""),
            input_ids=_ids(data.get("input_ids"))
            or {s: str(e.get("event_id", "")) for s, e in inputs.items()},
        )


def named_by(trigger_id: str) -> tuple[str, str, int]:
    """The contract, partition ('' for none) and generation that a trigger id names
    (`matcher.trigger_id_base`: `baton:<contract>:<partition or _>:<generation>`; a
    contract's name holds no colon); ('', '', 0) for an id not made so."""
    _, contract, rest = [*trigger_id.split(":", 2), "", ""][:3]
    partition, _, generation = rest.rpartition(":")
    if not contract or not generation.isdigit():
        return "", "", 0
    return contract, "" if partition == "_" else partition, int(generation)


def _when(kept: str) -> str:
    return ms_iso(int(kept)) if kept.isdigit() else kept


def _ids(raw: str | None) -> dict[str, str]:
    """`input_ids` (settle.lua): slot, id, slot, id, ... joined by RS."""
    parts = raw.split(SEP) if raw else []
    return dict(zip(parts[::2], parts[1::2], strict=False))


def _list(raw: str | None) -> list[str]:
    value = json.loads(raw) if raw else []
    return [str(v) for v in value] if isinstance(value, list) else []  # Lua's {} is empty


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One entry of the dead-letter stream: a trigger that failed for good."""

    entry_id: str
    trigger_id: str
    error: str
    at: str

    @classmethod
    def from_entry(cls, entry_id: str, fields: dict[str, str]) -> DeadLetter:
        return cls(entry_id, fields.get("trigger_id", ""), fields.get("error", ""),
                   fields.get("at", ""))  # fmt: skip


class EventLog(Protocol):
    async def append(self, events: Sequence[tuple[str, str]]) -> list[str | None]: ...


class MatchState(Protocol):
    async def record(
        self, ops: Sequence[RecordOp], version: str, ack: Sequence[str] = (), deliver_to: str = ""
    ) -> list[RecordOutcome]: ...
    async def read_partition(self, contract: str, partition: str) -> PartitionState: ...


class TriggerStore(Protocol):
    async def get_trigger(self, trigger_id: str) -> TriggerRecord | None: ...
    async def ack_trigger_entry(self, entry_id: str) -> None: ...
    async def begin_attempt(self, trigger_id: str) -> TriggerRecord | None: ...
    async def dispatched(
        self, trigger_id: str, entry_id: str, ref: str, url: str, warning: str = "",
        target: str = "", settled: tuple[str, str] | None = None,
    ) -> None: ...  # fmt: skip
    async def retry_later(
        self, trigger_id: str, entry_id: str, error: str, due_ms: int, target: str = ""
    ) -> None: ...
    async def dead_letter(
        self, trigger_id: str, entry_id: str, error: str, target: str = "",
        attempts: int | None = None,
    ) -> None: ...  # fmt: skip
    async def wait_for_target(
        self, trigger_id: str, entry_id: str, error: str, target: str, created_ms: int
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Limits:
    """A target's limits as the scripts take them (0: none)."""

    max_in_flight: int = 0
    interval_ms: int = 0  # between starts
    burst: int = 1

    @classmethod
    def of(cls, max_in_flight: int | None, per_second: float | None) -> Limits:
        """Starts evenly spaced (no burst), so no second ever holds more than the rate."""
        interval = max(1, int(1000 / per_second)) if per_second else 0
        return cls(max_in_flight or 0, interval, 1)

    @property
    def any(self) -> bool:
        return bool(self.max_in_flight or self.interval_ms)


class GateStorage(Protocol):
    """Per-target limits, waiting triggers and circuit breakers (gate_store.py)."""

    async def admit(
        self, target: str, limits: Limits, trigger_id: str, created_ms: int, entry_id: str,
        now_ms: int,
    ) -> tuple[str, str]: ...  # fmt: skip
    async def release(self, target: str, limits: Limits, now_ms: int, count: int) -> list[str]: ...
    async def outcome(
        self, target: str, answered: bool, now_ms: int, threshold: int, cooldown_ms: int,
        max_cooldown_ms: int, free: str = "",
    ) -> str: ...  # fmt: skip
    async def states(self, targets: Sequence[str]) -> dict[str, dict[str, Any]]: ...
    async def waiting_since(self, target: str, before_ms: int, count: int = 100) -> list[str]: ...
    async def forget(self, target: str, trigger_id: str) -> None: ...
