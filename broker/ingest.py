"""Events in: complete them (id, time) and append them to the log, idempotently.

Shared by the HTTP API and `BatonClient(redis_url=...)`, so both ways in behave alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from broker.events import Event, new_event_id, to_wire, wire_time
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
    received = wire_time(now or datetime.now(UTC))
    ids = [e.event_id or new_event_id() for e in events]
    flags = await log.append(
        [(i, to_wire(e, received, i)) for e, i in zip(events, ids, strict=True)]
    )
    result = IngestResult()
    for event_id, accepted in zip(ids, flags, strict=True):
        (result.accepted if accepted else result.duplicates).append(event_id)
    return result
