"""The target seam: what every adapter (Airflow, Dagster, Prefect, webhook) implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class TriggerRequest:
    """Start one downstream run. `trigger_id` is the idempotency key; `spec` is rendered."""

    trigger_id: str
    contract: str
    partition: str
    generation: int
    spec: dict[str, Any]
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the target says it started: its own reference and, if any, a link to it."""

    ref: str
    url: str = ""
    # Started, but something the user should know (e.g. the Airflow DAG is paused).
    warning: str = ""
    # The run was over when the target answered (a webhook's call is its run): there
    # is nothing to follow.
    finished: RunStatus | None = None


@dataclass(frozen=True, slots=True)
class RunStatus:
    """Where a downstream run stands: queued, running, succeeded or failed."""

    state: str
    detail: str = ""

    @property
    def finished(self) -> bool:
        return self.state in ("succeeded", "failed")


class Target(Protocol):
    async def trigger(self, request: TriggerRequest) -> Receipt:
        """Start the run, idempotently; raise TargetRejected or TargetUnavailable."""
        ...

    async def status(self, ref: str) -> RunStatus:
        """The state of the run `trigger` returned as `ref`."""
        ...

    async def check(self, spec: dict[str, Any]) -> list[str]:
        """Problems the live target finds with a (rendered) trigger spec; [] if none."""
        ...

    async def aclose(self) -> None: ...
