"""`baton replay`: rebuild match state from the events kept in the stream.

After a contract is added or changed, the inputs it would have seen are already in the
events stream (kept for `events_retention`, 7 days by default). Replay reads the events
that landed between two times, matches them against the contracts loaded now and
records them as inputs, in record-only mode: nothing fires, nothing counts as a
restatement, no deadline is watched. Partitions that the replay completed and that have
not run are listed; `baton backfill` starts them, at the pace it is given. Events
recorded before are duplicates and change nothing, so a replay can be repeated.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from broker.core.events import from_wire
from broker.matching.loaded import Contracts
from broker.matching.matcher import RecordOp
from broker.state.redis_store import RedisStore
from broker.time.backfill import readiness

PAGE = 1000


@dataclass
class ReplayReport:
    start: str
    end: str
    events: int = 0
    recorded: int = 0
    unreadable: int = 0
    # contract -> partitions the replay completed that have not run (newest first)
    ready: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"from": self.start, "to": self.end, "events": self.events,
                "recorded": self.recorded, "unreadable": self.unreadable,
                "ready": self.ready}  # fmt: skip

    def text(self) -> str:
        lines = [f"re-read {self.events} events that landed from {self.start} to {self.end}; "
                 f"recorded {self.recorded} inputs (nothing fired)"]  # fmt: skip
        if self.unreadable:
            lines.append(f"skipped {self.unreadable} unreadable entries")
        for name, keys in sorted(self.ready.items()):
            lines.append(f"{name}: {len(keys)} partitions complete and not run: "
                         + ", ".join(keys[:10]) + (" ..." if len(keys) > 10 else ""))  # fmt: skip
            lines.append(f"  start them: baton backfill {name} --from {min(keys)} --to {max(keys)}")
        return "\n".join(lines)


def parse_time(text: str) -> datetime:
    """ISO-8601, a date or a date and time; without an offset it is UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a time like 2026-11-23 or 2026-11-23T05:00Z") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def replay(
    store: RedisStore, contracts: Contracts, start: datetime, end: datetime
) -> ReplayReport:
    report = ReplayReport(start.isoformat(), end.isoformat())
    touched: dict[str, set[str]] = defaultdict(set)
    after: str | None = None
    start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    while page := await store.events_between(start_ms, end_ms, after, PAGE):
        after = page[-1][0]
        ops: list[RecordOp] = []
        for entry_id, fields in page:
            try:
                event, received_at = from_wire(fields["e"], entry_id)
            except (KeyError, ValueError):
                report.unreadable += 1
                continue
            ops += contracts.matcher.plan(event, received_at, entry_id).ops
        report.events += len(page)
        outcomes = await store.record(ops, contracts.version, record_only=True)
        for op, outcome in zip(ops, outcomes, strict=True):
            report.recorded += outcome.outcome == "recorded"
            touched[op.contract].add(op.partition)
    by_name = contracts.by_name()
    for name, partitions in touched.items():
        contract = by_name[name]
        states = await readiness(store, contract, sorted(partitions, reverse=True))
        ready = [r.partition for r in states if r.ready and not r.ran_as]
        if ready:
            report.ready[name] = ready
    return report
