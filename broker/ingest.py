"""Events in: complete them (id, time) and append them to the log, idempotently.

Shared by the HTTP API and `BatonClient(redis_url=...)`, so both ways in behave alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from broker.events import Encoded, Event, encode, wire, wire_time
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
    return await ingest_encoded(log, [encode(e) for e in events], now)


async def ingest_encoded(
    log: EventLog, events: Sequence[Encoded], now: datetime | None = None
) -> IngestResult:
    """`ingest` for events already encoded (`broker.events.encode`)."""
    received = wire_time(now or datetime.now(UTC))
    flags = await log.append([(e[0], wire(e, received)) for e in events])
    result = IngestResult()
    for (event_id, _, _), accepted in zip(events, flags, strict=True):
        (result.accepted if accepted else result.duplicates).append(event_id)
    return result
