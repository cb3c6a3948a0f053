"""CloudEvents 1.0 over HTTP on `POST /v1/events`, in both modes of the HTTP binding.

    structured   Content-Type: application/cloudevents+json, the envelope in the body
                 (application/cloudevents-batch+json: a list of envelopes)
    binary       ce-specversion, ce-id, ce-source, ce-type (ce-time) headers; the body
                 is the data

The data is a Baton event (`dataset`, `partition`, `status`, `metadata`, ...). What it
leaves out comes from the envelope: `event_id` is `<source>/<id>` (CloudEvents makes
source + id unique, so a resent CloudEvent publishes once), `occurred_at` is `time`,
`producer` is `source`. Each attribute read is checked for its type (`id: 5`, `time:
0`, `data: [1]` are refused, naming the attribute as the sender wrote it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from broker.core.errors import EventRejected
from broker.core.events import Event, parse_events
from broker.core.strict_json import shown

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
_REQUIRED = ("id", "source", "type")


def is_cloudevent(headers: Mapping[str, str]) -> bool:
    kind = headers.get("content-type", "").split(";")[0].strip().lower()
    return kind in (STRUCTURED, BATCH) or "ce-specversion" in headers


def read_cloudevents(data: Any, headers: Mapping[str, str], max_batch: int) -> list[Event]:
    """The Baton events carried by a CloudEvents request; EventRejected names each field."""
    kind = headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == BATCH:
        if not isinstance(data, list) or not data:
            raise EventRejected([("body", "a CloudEvents batch is a non-empty JSON list")])
        envelopes = [(f"[{i}].", e) for i, e in enumerate(data)]
    elif kind == STRUCTURED:
        envelopes = [("", data)]
    else:  # binary mode: the envelope is in the headers
        attrs = {k[3:]: v for k, v in headers.items() if k.startswith("ce-")}
        envelopes = [("ce-", {**attrs, "data": data})]
    if len(envelopes) > max_batch:
        raise EventRejected([("body", f"{len(envelopes)} events; the limit is {max_batch}")])
    errors: list[tuple[str, str]] = []
    events: list[dict[str, Any]] = []
    for where, envelope in envelopes:
        try:
            events.append(_event(envelope, where))
        except EventRejected as exc:
            errors += exc.errors
    if errors:
        raise EventRejected(errors)
    try:
        return parse_events({"events": events}, max_batch)
    except EventRejected as exc:  # name each field as the sender wrote it
        raise EventRejected([(_as_sent(f, envelopes), m) for f, m in exc.errors]) from exc


# The event's fields that the envelope fills in when the data leaves them out.
_FROM_ENVELOPE = {"event_id": "id", "producer": "source", "occurred_at": "time"}


def _as_sent(field: str, envelopes: list[tuple[str, Any]]) -> str:
    """`events[1].status` -> `[1].data.status` (batch), `data.status` (structured) or
    `status` (binary); `events[0].occurred_at` -> `time` (`ce-time`) when the envelope
    gave it."""
    index, _, rest = field.removeprefix("events[").partition("]")
    if not index.isdigit() or int(index) >= len(envelopes):
        return field
    where, envelope = envelopes[int(index)]
    rest = rest.removeprefix(".")
    name = re.split(r"[.\[]", rest, maxsplit=1)[0]
    if name in _FROM_ENVELOPE and name not in envelope["data"]:
        return f"{where}{_FROM_ENVELOPE[name]}"
    if where == "ce-":  # binary mode: the body is the data, named as for any event
        return rest or "body"
    return f"{where}data" + (f".{rest}" if rest else "")


def _event(envelope: Any, where: str) -> dict[str, Any]:
    if not isinstance(envelope, dict):
        raise EventRejected([(where.rstrip(".") or "body", "expected a CloudEvent object")])
    problems = [(f"{where}{name}", why) for name in _REQUIRED
                if (why := _attribute_problem(envelope.get(name), required=True))]  # fmt: skip
    if envelope.get("specversion") != "1.0":
        got = shown(repr(envelope.get("specversion")))
        problems.append((f"{where}specversion", f"must be '1.0', got {got}"))
    if why := _attribute_problem(envelope.get("time"), required=False):
        problems.append((f"{where}time", why))
    data = envelope.get("data")
    if not isinstance(data, dict):
        problems.append((f"{where}data", "must be a Baton event object (with dataset)"))
    if problems:
        raise EventRejected(problems)
    assert isinstance(data, dict)
    event = dict(data)
    event.setdefault("event_id", f"{envelope['source']}/{envelope['id']}")
    event.setdefault("producer", envelope["source"][:256])
    if envelope.get("time"):
        event.setdefault("occurred_at", envelope["time"])
    return event


def _attribute_problem(value: Any, required: bool) -> str | None:
    if value is None or value == "":
        return "required" if required else None
    return None if isinstance(value, str) else f"must be a string, got {shown(repr(value))}"
