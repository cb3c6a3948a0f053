"""CloudEvents 1.0 over HTTP on `POST /v1/events`, in both modes of the HTTP binding.

    structured   Content-Type: application/cloudevents+json, the envelope in the body
                 (application/cloudevents-batch+json: a list of envelopes)
    binary       ce-specversion, ce-id, ce-source, ce-type (ce-time) headers; the body
                 is the data

The data is a Baton event (`dataset`, `partition`, `status`, `metadata`, ...). What it
leaves out comes from the envelope: `event_id` is `<source>/<id>` (CloudEvents makes
source + id unique, so a resent CloudEvent publishes once), `occurred_at` is `time`,
`producer` is `source`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from broker.errors import EventRejected
from broker.events import Event, parse_events

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
    except EventRejected as exc:  # name each field as the sender wrote it: under data
        raise EventRejected([(_under_data(f, envelopes), m) for f, m in exc.errors]) from exc


def _under_data(field: str, envelopes: list[tuple[str, Any]]) -> str:
    """`events[1].status` -> `[1].data.status` (batch) or `data.status` (one event)."""
    index, _, rest = field.removeprefix("events[").partition("].")
    if not index.isdigit() or int(index) >= len(envelopes):
        return field
    where = envelopes[int(index)][0]
    return f"{'' if where == 'ce-' else where}data.{rest}"


def _event(envelope: Any, where: str) -> dict[str, Any]:
    if not isinstance(envelope, dict):
        raise EventRejected([(where.rstrip(".") or "body", "expected a CloudEvent object")])
    problems = [(f"{where}{name}", "required") for name in _REQUIRED if not envelope.get(name)]
    if envelope.get("specversion") != "1.0":
        got = envelope.get("specversion")
        problems.append((f"{where}specversion", f"must be '1.0', got {got!r}"))
    data = envelope.get("data")
    if not isinstance(data, dict):
        problems.append((f"{where}data", "must be a Baton event object (with dataset)"))
    if problems:
        raise EventRejected(problems)
    assert isinstance(data, dict)
    event = dict(data)
    event.setdefault("event_id", f"{envelope['source']}/{envelope['id']}")
    event.setdefault("producer", str(envelope["source"])[:256])
    if envelope.get("time"):
        event.setdefault("occurred_at", envelope["time"])
    return event
