"""The gate in front of each target: its limits and its circuit breaker.

A target may cap its downstream runs in flight (`max_in_flight`) and its starts per
second (`max_starts_per_second`); a trigger over a limit waits durably, in order of
age, and is never dropped. Every target has a circuit breaker (`breaker:`): after a
few transient failures in a row it opens, its triggers wait without calling it, and
one probe goes out after a cooldown; when the probe gets through, the waiting
triggers go out oldest first, as fast as the limits allow. So an outage costs one
probe per cooldown, not every trigger times every attempt.

The decisions are Lua scripts (see broker/state/gate_store.py), so several workers
share each target's limits and breaker. To keep the call to Redis off the hot path, a
target with no limits is asked about only while this worker believes its breaker is
not closed; the belief is refreshed each round and by every failure it sees.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from broker.state.ports import GateStorage, Limits, TriggerRecord

log = logging.getLogger("baton.dispatch")
RELEASE_PER_ROUND = 200


class TargetConfig(Protocol):
    @property
    def max_in_flight(self) -> int | None: ...
    @property
    def max_starts_per_second(self) -> float | None: ...
    @property
    def breaker(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class _Gate:
    limits: Limits
    failures: int
    cooldown_ms: int
    max_cooldown_ms: int


def _gate(config: TargetConfig) -> _Gate:
    breaker = config.breaker
    return _Gate(
        Limits.of(config.max_in_flight, config.max_starts_per_second),
        breaker.failures,
        int(breaker.cooldown.total_seconds() * 1000),
        int(breaker.max_cooldown.total_seconds() * 1000),
    )


def created_ms(record: TriggerRecord) -> int:
    """When the trigger was made (its place in the waiting line), epoch ms."""
    try:
        return int(datetime.fromisoformat(record.created_at).timestamp() * 1000)
    except ValueError:
        return 0


class Gates:
    def __init__(
        self,
        store: GateStorage,
        configs: Mapping[str, TargetConfig],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.gates = {name: _gate(config) for name, config in configs.items()}
        self.clock = clock
        self.open: set[str] = set()  # targets this worker believes are not closed
        self.failing: set[str] = set()  # targets with failures this worker has seen
        self.waiting = False  # whether the last round saw triggers waiting at a gate

    def watching(self) -> bool:
        """Whether a round has something to watch: a trigger waiting, a breaker not
        closed, a target failing (else a round every `IDLE_S` learns of them)."""
        return self.waiting or bool(self.open or self.failing)

    def _now_ms(self) -> int:
        return int(self.clock().timestamp() * 1000)

    def gated(self, target: str) -> bool:
        gate = self.gates.get(target)
        return gate is not None and (gate.limits.any or target in self.open)

    async def admit(self, target: str, record: TriggerRecord, entry_id: str) -> str | None:
        """None when the trigger may call `target` now; else why it waits."""
        gate = self.gates[target]
        verdict, reason = await self.store.admit(
            target, gate.limits, record.id, created_ms(record), entry_id, self._now_ms()
        )
        if verdict == "go":
            if reason == "probe":
                log.warning("target %s: %s goes as the circuit breaker's probe", target,
                            record.id)  # fmt: skip
            return None
        return reason

    async def answered(self, target: str, trigger_id: str, started: bool) -> None:
        """The target answered (a run started, or a permanent refusal: `started` False
        frees the trigger's in-flight slot)."""
        gate = self.gates.get(target)
        if gate is None or not (target in self.failing or target in self.open
                                or gate.limits.any):  # fmt: skip
            return
        free = "" if started else trigger_id
        args = (gate.failures, gate.cooldown_ms, gate.max_cooldown_ms)
        await self.store.outcome(target, True, self._now_ms(), *args, free=free)
        if target in self.open or target in self.failing:
            log.info("target %s answers again: circuit breaker closed", target)
        self.open.discard(target)
        self.failing.discard(target)

    async def failed(self, target: str, trigger_id: str) -> bool:
        """A transient failure; True when the breaker is (now) open."""
        gate = self.gates.get(target)
        if gate is None:
            return False
        self.failing.add(target)
        args = (gate.failures, gate.cooldown_ms, gate.max_cooldown_ms)
        state = await self.store.outcome(target, False, self._now_ms(), *args, free=trigger_id)
        if state == "open":
            if target not in self.open:
                log.error("target %s: circuit breaker open; its triggers wait for it", target)
            self.open.add(target)
            return True
        return False

    async def round(self) -> int:
        """Refresh what this worker believes of each breaker, and let waiting triggers
        go where the limits and breakers allow; returns how many went."""
        if not self.gates:
            return 0
        states = await self.store.states(list(self.gates))
        self.open = {t for t, s in states.items() if s["breaker"] != "closed"}
        released = 0
        now = self._now_ms()
        self.waiting = any(state["waiting"] for state in states.values())
        for target, state in states.items():
            if state["waiting"]:
                gate = self.gates[target]
                out = await self.store.release(target, gate.limits, now, RELEASE_PER_ROUND)
                released += len(out)
                if out and state["breaker"] != "closed":
                    log.warning("target %s: %s goes as the circuit breaker's probe", target,
                                out[0])  # fmt: skip
        return released
