"""How a partition hash (`Keys.partition`) and a trigger record hold their events.

A partition hash keeps one field per input slot, `i:<slot>`, holding
`<order key> RS <landed ms> RS <event id> RS <the rest of the event as JSON>`
(RS the record separator, U+001E: neither an order key, a number, an event id nor a
JSON text holds it raw). The landed ms is left empty when it is the order key's
arrival (`<occurred>|<stream ms>-<seq>`, lua/lib/kept.lua; `<occurred>` is empty when
the event occurred as it arrived), as it is for every event since the stream's entries
are timed by Redis. The rest leaves out what the value or the slot says
already: the event id; `received_at` (the landed ms, to the ms); the dataset; the
partition when it is the slot's; and fields that hold their defaults (`events.DEFAULTS`,
and an `occurred_at` that is the `received_at`). A failed event is kept alike under
`f:<slot>`; `c:<slot>` marks a slot an unpartitioned firing consumed. lua/lib/kept.lua
makes and takes apart that text (record.lua writes it, claim.lua and settle.lua read it).

A trigger's `inputs` is a JSON object slot -> that same text, until it settles
(settle.lua keeps only `input_ids`).

An earlier Baton kept four fields per slot (`s:` the whole event as JSON, `o:` the order
key, `e:` the event id, `r:` the landed ms), a failed event as JSON, and whole events in
a trigger's inputs: all are read as they are, and a slot written again is kept the new
way. Per input that was ~330 bytes; now ~135 (the field's name included).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from broker.core.events import DEFAULTS, SEP, Event
from broker.matching.condition import split_slot


@dataclass(frozen=True, slots=True)
class Input:
    """The event held for one slot."""

    order: str
    landed_ms: int
    event_id: str
    event: dict[str, Any]  # whole: every field of the event, and `received_at` (ISO)

    def parsed(self) -> tuple[Event, datetime]:
        """The event as an `Event`, and when it was received."""
        data = {k: v for k, v in self.event.items() if k != "received_at"}
        return Event.model_validate(data), datetime.fromisoformat(self.event["received_at"])


def held_inputs(fields: Mapping[str, str]) -> dict[str, Input]:
    """Slot -> the input held, of a partition hash's fields (either layout)."""
    out: dict[str, Input] = {}
    for name, value in fields.items():
        if name.startswith("i:"):
            out[name[2:]] = _compact(name[2:], value)
    for name, value in fields.items():
        if name.startswith("e:") and (slot := name[2:]) not in out and f"s:{slot}" in fields:
            event = _whole(json.loads(fields[f"s:{slot}"]))
            out[slot] = Input(fields.get(f"o:{slot}", ""), _ms(fields.get(f"r:{slot}", "")),
                              value, event)  # fmt: skip
    return out


def held_failures(fields: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Slot -> the failed event held (whole), of a partition hash's fields."""
    return {name[2:]: _event(name[2:], value) for name, value in fields.items()
            if name.startswith("f:")}  # fmt: skip


def trigger_inputs(raw: str | bytes | None) -> dict[str, dict[str, Any]]:
    """A trigger record's `inputs` (JSON: slot -> event), each event whole."""
    data = json.loads(raw or "{}")
    return {slot: _event(slot, v) if isinstance(v, str) else _whole(v) for slot, v in data.items()}


def _event(slot: str, value: str) -> dict[str, Any]:
    return _compact(slot, value).event if not value.startswith("{") else _whole(json.loads(value))


def _compact(slot: str, value: str) -> Input:
    order, landed, event_id, rest = value.split(SEP, 3)
    ms = _ms(landed or order.partition("|")[2].partition("-")[0])
    dataset, partition = split_slot(slot)
    received = ms_iso(ms)
    event: dict[str, Any] = {**DEFAULTS, "dataset": dataset, "event_id": event_id}
    if partition:
        event["partition"] = partition
    if rest != "{}":
        event |= json.loads(rest)
    event["received_at"] = received
    event.setdefault("occurred_at", received)
    return Input(order, ms, event_id, event)


def ms_iso(ms: int) -> str:
    """`ms_time(ms).isoformat()`, faster: a worker reads back every input it fires with,
    and a trigger record's times are kept as ms."""
    second, milli = divmod(ms, 1000)
    return f"{_second(second)}.{milli:03d}000+00:00" if milli else f"{_second(second)}+00:00"


@lru_cache(maxsize=1024)
def _second(epoch_s: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_s))


def _whole(data: dict[str, Any]) -> dict[str, Any]:
    """An event as kept, with what it leaves out put back."""
    if "occurred_at" not in data and "received_at" in data:
        data["occurred_at"] = data["received_at"]
    return {**DEFAULTS, **data}


def _ms(text: str) -> int:
    return int(text) if text.isdigit() else 0
