"""Events in: complete them (id, time) and append them to the log, idempotently.

Shared by the HTTP API and `BatonClient(redis_url=...)`, so both ways in behave alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from broker.events import Event, to_wire
from broker.state.ports import EventLog


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[str]]:
        return {"accepted": self.accepted, "duplicates": self.duplicates}


async def ingest(
    log: EventLog, events: Sequence[Event], now: datetime | None = None
) -> IngestResult:
    """Append `events`; an `event_id` seen before is reported as a duplicate, not added."""
    received = now or datetime.now(UTC)
    completed = [e.completed(received) for e in events]
    flags = await log.append([(str(e.event_id), to_wire(e, received)) for e in completed])
    result = IngestResult()
    for event, accepted in zip(completed, flags, strict=True):
        (result.accepted if accepted else result.duplicates).append(str(event.event_id))
    return result
