"""How a partition hash (`Keys.partition`) holds the inputs recorded for it.

One field per input slot, `i:<slot>`, holds
`<order key> RS <landed ms> RS <event id> RS <the event's JSON without its event_id>`
(RS the record separator, U+001E: neither an order key, a number, an event id nor a
JSON text holds it raw). record.lua writes it; claim.lua's `held` and `held_event` read
it. An earlier Baton kept four fields per slot (`s:` the event, `o:` the order key,
`e:` the event id, `r:` the landed ms): they are read as they are and replaced by the
one field when their slot is next written. One field instead of four, and the id once
instead of twice, is ~140 bytes less per input.

Failed events (`f:<slot>`) and the slots an unpartitioned firing consumed (`c:<slot>`)
are fields of their own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

SEP = "\x1e"


@dataclass(frozen=True, slots=True)
class Input:
    """The event held for one slot."""

    order: str
    landed_ms: int
    event_id: str
    event: str  # its JSON, whole (with `event_id`), as stored (events.stored_event)


def held_inputs(fields: Mapping[str, str]) -> dict[str, Input]:
    """Slot -> the input held, of a partition hash's fields (either layout)."""
    out: dict[str, Input] = {}
    for name, value in fields.items():
        if name.startswith("i:"):
            order, landed, event_id, rest = value.split(SEP, 3)
            out[name[2:]] = Input(order, _ms(landed), event_id, _whole(event_id, rest))
    for name, value in fields.items():
        if name.startswith("e:") and (slot := name[2:]) not in out and f"s:{slot}" in fields:
            out[slot] = Input(fields.get(f"o:{slot}", ""), _ms(fields.get(f"r:{slot}", "")),
                              value, fields[f"s:{slot}"])  # fmt: skip
    return out


def _whole(event_id: str, rest: str) -> str:
    return '{"event_id":' + json.dumps(event_id) + ("," + rest[1:] if rest != "{}" else "}")


def _ms(text: str) -> int:
    return int(text) if text.isdigit() else 0
