"""Events in: complete them (id, time) and append them to the log, idempotently.

Shared by the HTTP API and `BatonClient(redis_url=...)`, so both ways in behave alike.
With a `route` (the API passes its matcher's), the result also says, per event, which
contracts it feeds and which it cannot, and why: events are facts, so they are kept
either way, but a producer can learn that one went nowhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from broker.core.events import Encoded, Event, stream_text
from broker.state.ports import EventLog, StreamEntry

# An event -> (the contracts it feeds, [(contract or None, why not, kind)]).
Route = Callable[[Event], tuple[list[str], list[tuple[str | None, str, str]]]]
# Kinds of `Cannot` that look like the producer's mistake, which strict publishing
# refuses (a `where` that said no, or a static contract's unlisted key, is routine).
MISTAKES = frozenset({"no_reader", "bad_partition"})


@dataclass(frozen=True, slots=True)
class Cannot:
    """A contract an event cannot feed (None: no contract reads its dataset), why, and
    what kind of reason that is (see `broker.matching.matcher.Route`)."""

    contract: str | None
    reason: str
    kind: str = "bad_partition"


@dataclass(frozen=True, slots=True)
class EventRoute:
    """Where one event goes: the contracts it feeds, and those it cannot."""

    event_id: str
    feeds: list[str] = field(default_factory=list)
    cannot: list[Cannot] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        cannot = [{"contract": c.contract, "reason": c.reason, "kind": c.kind}
                  for c in self.cannot]  # fmt: skip
        return {"event_id": self.event_id, "feeds": self.feeds, "cannot": cannot}

    def lines(self) -> list[str]:
        """`  feeds: a, b` and a `  not fed: <reason>` for each contract it cannot feed."""
        unread = [c.reason for c in self.cannot if c.contract is None]
        feeds = ", ".join(self.feeds) or "nothing" + "".join(f" ({why})" for why in unread)
        return [f"  feeds: {feeds}"] + [
            f"  not fed: {c.reason}" for c in self.cannot if c.contract is not None
        ]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EventRoute:
        cannot = [Cannot(c.get("contract"), str(c.get("reason", "")),
                         str(c.get("kind", "bad_partition"))) for c in data["cannot"]]  # fmt: skip
        return cls(str(data["event_id"]), [str(f) for f in data["feeds"]], cannot)


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    # One per event, in order; None when nobody routed them (straight to Redis).
    routes: list[EventRoute] | None = None
    # The events stream entries the accepted events became (id, fields), in order.
    entries: list[StreamEntry] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"accepted": self.accepted, "duplicates": self.duplicates}
        if self.routes is not None:
            out["routes"] = [r.as_dict() for r in self.routes]
        return out

    def unrouted(self) -> list[str]:
        """`<event id>: <reason>` for each contract an event cannot feed by the
        producer's mistake (a partition key of the wrong shape, a dataset no contract
        reads); what strict publishing refuses. A `where` filter's no is not one."""
        return [f"{r.event_id}: {c.reason}" for r in self.routes or [] for c in r.cannot
                if c.kind in MISTAKES]  # fmt: skip

    def lines(self) -> list[str]:
        """For people: each event, accepted or a duplicate, and where it goes."""
        if self.routes is None:
            return [f"accepted {i}" for i in self.accepted] + [
                f"duplicate {i} (already accepted before)" for i in self.duplicates
            ]
        fresh, out = set(self.accepted), []
        for route in self.routes:
            seen = route.event_id in fresh
            out.append(f"accepted {route.event_id}" if seen
                       else f"duplicate {route.event_id} (already accepted before)")  # fmt: skip
            fresh.discard(route.event_id)  # the same id again in one batch: a duplicate
            out += route.lines()
        return out


async def ingest(
    log: EventLog, events: Sequence[Event], route: Route | None = None
) -> IngestResult:
    """Append `events`; an `event_id` seen before is reported as a duplicate, not added."""
    encoded = [stream_text(e) for e in events]
    # Routed before the append: whatever routing does, nothing is half-written.
    routes = None if route is None else _routes(route, events, [c[0] for c in encoded])
    result = await ingest_encoded(log, encoded)
    return IngestResult(result.accepted, result.duplicates, routes, result.entries)


def _routes(route: Route, events: Sequence[Event], ids: list[str]) -> list[EventRoute]:
    """Each event's route; events the matcher answers alike (one day's events of one
    dataset, say) share their reasons rather than each building its own."""
    # id -> (the answer, kept alive so its id is not reused, and its reasons)
    made: dict[int, tuple[object, list[Cannot]]] = {}
    out = []
    for event, event_id in zip(events, ids, strict=True):
        answer = route(event)
        feeds, cannot = answer
        known = made.get(id(answer))
        if known is None or known[0] is not answer:
            known = made[id(answer)] = (answer, [Cannot(c, why, kind) for c, why, kind in cannot])
        out.append(EventRoute(event_id, feeds, known[1]))
    return out


async def ingest_encoded(log: EventLog, events: Sequence[Encoded]) -> IngestResult:
    """`ingest` for events already encoded (`broker.core.events.stream_text`)."""
    payloads = list(events)  # as encoded: the stream entry's id says when it was received
    added = await log.append(payloads)
    result = IngestResult()
    for (event_id, payload), entry_id in zip(payloads, added, strict=True):
        if entry_id is None:
            result.duplicates.append(event_id)
        else:
            result.accepted.append(event_id)
            result.entries.append((entry_id, {"e": payload}))
    return result
