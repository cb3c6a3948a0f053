"""Dataset-completion events: the one shape every way in ends up as.

An `Event` is what a producer says ("dataset D, partition P, finished with status S at
time T"); `parse_events` turns a request body (read by `broker.core.strict_json`) into
events or a list of precise field errors; `encode` is an event as compact JSON (a
request's), `stream_text` and `from_wire` the stream's encoding (one field: dataset,
partition, id and the rest as JSON, RS between). Metadata from Python (the client) is
held to the strict JSON rules too, and nests at most MAX_METADATA_DEPTH levels.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from broker.core.errors import EventRejected
from broker.core.strict_json import path_text, problems, suspect

MAX_METADATA_BYTES = 64 * 1024
MAX_METADATA_DEPTH = 32  # levels of objects and arrays; the stream's serializer stops near 255
# Printable characters, lone surrogates (U+D800-U+DFFF) left out.
_TEXT = r"\x20-\x7e\u00a0-\ud7ff\ue000-\U0010ffff"
_DATASET = re.compile(f"^[{_TEXT}]{{1,256}}$")
_PARTITION = re.compile(r"^[\x21-\x7e]{1,128}$")
_EVENT_ID = re.compile(f"^[{_TEXT}]{{1,512}}$")


class Event(BaseModel):
    """One dataset-completion event, as SPEC 'Events' describes it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The schema states the printable-ASCII core of each rule (validators below accept
    # all printable Unicode) so that OpenAPI clients and generators stay inside it.
    dataset: str = Field(json_schema_extra={"pattern": r"^[\x20-\x7e]{1,256}$"})
    partition: str | None = Field(None, json_schema_extra={"pattern": r"^[\x21-\x7e]{1,128}$"})
    status: Literal["success", "failed"] = "success"
    event_id: str | None = Field(None, json_schema_extra={"pattern": r"^[\x20-\x7e]{1,512}$"})
    producer: str | None = Field(None, max_length=512)
    occurred_at: datetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, value: str) -> str:
        if not _DATASET.fullmatch(value):
            raise ValueError("must be 1 to 256 printable characters")
        return value

    @field_validator("partition")
    @classmethod
    def _partition(cls, value: str | None) -> str | None:
        if value is not None and not _PARTITION.fullmatch(value):
            raise ValueError("must be 1 to 128 printable characters without spaces")
        return value

    @field_validator("event_id")
    @classmethod
    def _event_id(cls, value: str | None) -> str | None:
        if value is not None and not _EVENT_ID.fullmatch(value):
            raise ValueError("must be 1 to 512 printable characters")
        return value

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must carry a timezone, e.g. 2026-11-23T05:12:00Z")
        return value

    @field_validator("metadata")
    @classmethod
    def _small(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Metadata from Python (the client) has not been through `read_body`: the same
        # rules, walked only when its JSON text gives cause.
        try:
            text = json.dumps(value, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            text = ""
        if not text or suspect(text, MAX_METADATA_DEPTH):
            found = problems(value, MAX_METADATA_DEPTH, "metadata")
            if found or not text:
                raise ValueError("; ".join(f"{at}: {why}" for at, why in found) or "is not JSON")
        size = len(text.encode())
        if size > MAX_METADATA_BYTES:
            raise ValueError(f"is {size} bytes; at most {MAX_METADATA_BYTES} are allowed")
        return value

    def completed(self, received_at: datetime) -> Event:
        """This event with `event_id` and `occurred_at` filled in."""
        return self.model_copy(
            update={
                "event_id": self.event_id or new_event_id(),
                "occurred_at": self.occurred_at or received_at,
            }
        )


def new_event_id() -> str:
    return f"baton-{uuid.uuid4().hex}"


class Batch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[dict[str, Any]] = Field(min_length=1)


def parse_events(body: Any, max_batch: int) -> list[Event]:
    """Validate one event or `{"events": [...]}`; raise EventRejected naming each bad field."""
    if isinstance(body, dict) and "events" in body:
        try:
            raw = Batch.model_validate(body).events
        except ValidationError as exc:
            raise EventRejected(field_errors(exc, "")) from exc
        if len(raw) > max_batch:
            raise EventRejected([("events", f"holds {len(raw)} events; at most {max_batch}")])
        prefix = "events[{}]."
    elif isinstance(body, dict):
        raw, prefix = [body], ""
    else:
        raise EventRejected([("", "the body must be a JSON object: an event or {'events': [...]}")])
    return _validate_all(raw, prefix)


def _validate_all(raw: list[dict[str, Any]], prefix: str) -> list[Event]:
    events: list[Event] = []
    errors: list[tuple[str, str]] = []
    for index, item in enumerate(raw):
        try:
            events.append(Event.model_validate(item))
        except ValidationError as exc:
            errors += field_errors(exc, prefix.format(index))
    if errors:
        raise EventRejected(errors)
    return events


def field_errors(exc: ValidationError, prefix: str) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors():
        out.append((path_text(prefix.rstrip("."), err["loc"]) or "body", err["msg"]))
    return out


# An event as compact JSON with its `event_id` filled in, waiting only for the time it is
# received: (event_id, JSON body). Plain strings in a tuple, so a client holding 100,000
# of them gives the garbage collector nothing to walk (100,000 models would cost more in
# collections than in validation).
Encoded = tuple[str, str]


def encode(event: Event) -> Encoded:
    event_id = event.event_id or new_event_id()
    body = event.model_dump_json(exclude_none=True, exclude_defaults=True)
    if event.event_id is None:
        body = '{"event_id":' + json.dumps(event_id) + "," + body[1:]
    return event_id, body


# The stream's entry names the dataset, partition and id in text of their own, not as
# JSON keys: 40 bytes less an event (none of the three, nor JSON, holds a raw RS).
SEP = "\x1e"
_NAMED = {"dataset", "partition", "event_id"}


def stream_text(event: Event) -> Encoded:
    """(event_id, the stream entry's text): `<dataset> RS <partition, or nothing> RS
    <event_id> RS <the rest as compact JSON, or nothing>`, its defaults left out."""
    event_id = event.event_id or new_event_id()
    rest = event.model_dump_json(exclude_none=True, exclude_defaults=True, exclude=_NAMED)
    rest = "" if rest == "{}" else rest
    return event_id, f"{event.dataset}{SEP}{event.partition or ''}{SEP}{event_id}{SEP}{rest}"


def from_wire(payload: str | bytes, entry_id: str = "") -> tuple[Event, datetime]:
    """A stream entry's event (`stream_text`, or the JSON an earlier Baton wrote) and
    when it was received: when Redis added it, by its `entry_id` (an entry written
    before `received_at` was left out to that end carries its own). An event that says
    nothing of when it occurred occurred then."""
    text = payload.decode() if isinstance(payload, bytes) else payload
    if SEP in text:
        dataset, partition, event_id, rest = text.split(SEP, 3)
        data = json.loads(rest) if rest else {}
        data |= {"dataset": dataset, "event_id": event_id}
        if partition:
            data["partition"] = partition
    else:
        data = json.loads(text)
    received = data.pop("received_at", None)
    at = datetime.fromisoformat(received) if received else entry_time(entry_id)
    data.setdefault("occurred_at", at)
    return Event.model_validate(data), at


def entry_time(entry_id: str) -> datetime:
    """When Redis added stream entry `entry_id` (`<ms>-<seq>`); ValueError if not one."""
    return ms_time(int(entry_id.partition("-")[0]))


def ms_time(ms: int) -> datetime:
    """An epoch time in ms as a datetime (exactly: no float in between)."""
    return datetime.fromtimestamp(ms // 1000, UTC).replace(microsecond=ms % 1000 * 1000)


def epoch_ms(instant: datetime) -> int:
    """A datetime as epoch ms, exactly (`timestamp() * 1000` can fall 1 ms short)."""
    return (instant - _EPOCH) // timedelta(milliseconds=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# What a stored event leaves out when it holds the default (`encode`, `slot_payload`;
# state/held.py puts it back): 33 bytes of every copy kept in Redis for most events.
DEFAULTS: dict[str, Any] = {"status": "success", "metadata": {}}
