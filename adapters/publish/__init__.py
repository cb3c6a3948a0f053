"""The publish side: helpers that run inside Airflow, Dagster and Prefect tasks.

They announce "dataset done" to Baton with `BatonClient` over HTTP, so they need only
httpx and pydantic in the orchestrator's environment:

    pip install --no-deps baton httpx

Every helper gives each event an id made from the orchestrator's own identity for the
work (the Airflow task instance, the Dagster materialization, the Prefect flow run), so
a retried task or a resent event is a duplicate to Baton, never a second completion.

When Baton cannot be reached, the events go to a spool folder and a warning is logged;
the user's task does not fail unless `required` is set. The spool is sent, oldest first,
before the next publish from the same machine, or with `baton spool flush`.

Baton's answer says where each event goes. An event that feeds no contract, or cannot
feed one that reads its dataset (a partition key of the wrong shape, say), is logged as
a warning; with `strict` the task fails (`Unrouted`), like `required`, though Baton has
kept the event: it is a fact, and a later contract may read it.

Settings, from the environment unless given:

    BATON_URL        Baton's API (http://127.0.0.1:8000)
    BATON_TOKEN      a producer token
    BATON_SPOOL_DIR  where undeliverable events wait (~/.baton/spool)
    BATON_REQUIRED   "true": fail the task when its events cannot be delivered
    BATON_STRICT     "true": fail the task when an event goes nowhere it is read
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker.client import BatonClient, BatonUnavailable, PublishError, check_routes, make_event
from broker.core.events import Event
from broker.ingest.intake import IngestResult

log = logging.getLogger("baton.publish")

DEFAULT_URL = "http://127.0.0.1:8000"
_MAX_ID = 512


def stable_event_id(*parts: object) -> str:
    """An event id from the parts that name one unit of work, e.g. a task instance.

    Readable when it fits the 512-character limit, else shortened with a hash."""
    text = "/".join(str(p) for p in parts if p is not None and p != "")
    if len(text) <= _MAX_ID:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()
    return f"{text[: _MAX_ID - len(digest) - 1]}#{digest}"


@dataclass
class Outcome:
    """What happened to one publish: sent (accepted or duplicate), spooled, or refused;
    `unrouted`: why sent events feed nothing, or not every contract reading them."""

    accepted: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    spooled: list[str] = field(default_factory=list)
    refused: str | None = None
    flushed: int = 0
    unrouted: list[str] = field(default_factory=list)


def settle_routes(outcome: Outcome, result: IngestResult, strict: bool) -> None:
    """Note in `outcome`, and as a warning, the events that go nowhere they are read;
    when `strict`, raise Unrouted (after Baton has kept them), failing the task."""
    outcome.unrouted = result.unrouted()
    if outcome.unrouted:
        log.warning("Baton accepted the events, but not every one is routed: %s",
                    "; ".join(outcome.unrouted))  # fmt: skip
    if strict:
        check_routes(result)


def _flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")


class Spool:
    """Events Baton did not take yet: one JSON file per publish, written atomically."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def put(self, events: Sequence[Event]) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.json"
        temp = self.folder / f".{name}.tmp"
        temp.write_text(json.dumps([e.model_dump(mode="json", exclude_none=True) for e in events]))
        temp.replace(self.folder / name)
        return self.folder / name

    def files(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(self.folder.glob("[0-9]*.json"))

    def flush(self, client: BatonClient) -> int:
        """Send what waits, oldest first; BatonUnavailable stops it, and is raised.

        Two processes flushing at once may both send a file: the event ids make the
        second send a duplicate. A file Baton refuses (4xx) is set aside as
        `*.refused`, with the answer next to it, so it does not block the rest."""
        sent = 0
        for path in self.files():
            try:
                events = json.loads(path.read_text())
            except FileNotFoundError:
                continue  # another process sent it
            try:
                client.publish_many(events)
            except BatonUnavailable:
                raise
            except PublishError as exc:
                path.with_suffix(".refused").write_text(
                    json.dumps({"error": str(exc), "problem": exc.problem, "events": events})
                )
                log.error("Baton refused spooled events in %s: %s", path.name, exc)
            path.unlink(missing_ok=True)
            sent += len(events)
        return sent


class Publisher:
    """Publishes events for a task: flushes the spool first, spools on an outage."""

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        spool_dir: str | Path | None = None,
        required: bool | None = None,
        strict: bool | None = None,
        attempts: int = 4,
        timeout: float = 5.0,
        producer: str | None = None,
    ) -> None:
        env = os.environ
        self.url = url or env.get("BATON_URL") or DEFAULT_URL
        self.token = token or env.get("BATON_TOKEN") or None
        folder = spool_dir or env.get("BATON_SPOOL_DIR") or Path.home() / ".baton" / "spool"
        self.spool = Spool(Path(folder).expanduser())
        self.required = _flag("BATON_REQUIRED") if required is None else required
        self.strict = _flag("BATON_STRICT") if strict is None else strict
        self.attempts = attempts
        self.timeout = timeout
        self.producer = producer

    def event(
        self,
        dataset: str,
        partition: str | None,
        *,
        event_id: str,
        status: str = "success",
        metadata: Mapping[str, Any] | None = None,
    ) -> Event:
        return make_event(
            dataset, partition, status=status, metadata=_jsonable(metadata or {}),
            event_id=event_id, producer=self.producer,
        )  # fmt: skip

    def publish(self, events: Sequence[Event]) -> Outcome:
        """Deliver `events`; never raises on an outage or a refusal unless `required`,
        nor on events that go nowhere unless `strict` (Unrouted)."""
        outcome = Outcome()
        if not events:
            return outcome
        client = BatonClient(
            self.url, token=self.token, attempts=self.attempts, timeout=self.timeout
        )
        result = None
        try:
            outcome.flushed = self.spool.flush(client)
            result = client.publish_many(events)
            outcome.accepted, outcome.duplicates = result.accepted, result.duplicates
        except BatonUnavailable as exc:
            path = self.spool.put(events)
            outcome.spooled = [e.event_id or "" for e in events]
            log.warning(
                "Baton at %s is unavailable (%s); %d event(s) kept in %s, sent with the "
                "next publish or `baton spool flush`", self.url, exc, len(events), path,
            )  # fmt: skip
            if self.required:
                raise
        except PublishError as exc:
            outcome.refused = str(exc)
            log.error("Baton refused the events %s: %s", [e.event_id for e in events], exc)
            if self.required:
                raise
        finally:
            client.close()
        if result is not None:
            settle_routes(outcome, result, self.strict)
        return outcome


def _jsonable(value: Mapping[str, Any]) -> dict[str, Any]:
    """Metadata as JSON can carry it: what is not JSON becomes its string."""
    return dict(json.loads(json.dumps(dict(value), default=str)))


def spool_command(
    action: str, *, spool_dir: str | None = None, url: str | None = None, token: str | None = None
) -> tuple[int, str]:
    """`list` or `flush` the spool; returns the exit code and what to print."""
    publisher = Publisher(url, token=token, spool_dir=spool_dir)
    files = publisher.spool.files()
    if action == "list":
        lines = [f"{len(files)} file(s) waiting in {publisher.spool.folder}"]
        lines += [f"  {path.name}: {len(json.loads(path.read_text()))} event(s)" for path in files]
        return 0, "\n".join(lines)
    client = BatonClient(publisher.url, token=publisher.token, attempts=publisher.attempts)
    try:
        sent = publisher.spool.flush(client)
    except BatonUnavailable as exc:
        return 1, f"Baton at {publisher.url} is unavailable: {exc}"
    finally:
        client.close()
    left = len(publisher.spool.files())
    return (0 if left == 0 else 1), f"sent {sent} event(s) to {publisher.url}; {left} file(s) left"
