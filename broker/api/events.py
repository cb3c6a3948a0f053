"""POST /v1/events: one event or a batch, validated, made durable, answered per SPEC.

The body is read as raw bytes so the size limit holds before parsing and every field
error can be named. `answer` is the one implementation; the FastAPI route documents it
in OpenAPI, and `EventsFastPath` serves the same function without the framework's
routing, which cost about half the CPU of a single-event request.

Every way in refuses, before anything is written:
    401/403  no producer, or an event outside its scope
    413      a body over `api.max_body_bytes`
    415      a Content-Type that is not JSON (none at all is JSON: CloudEvents binary
             mode and many scripts send none)
    400      a body that is not strict JSON (`broker.core.events.read_body`), naming where
    422      a value that is not what its field takes, naming the field
The 202 answer says, per event, which contracts it feeds and which it cannot, and why
(`Matcher.route`, with the contract set of the moment).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from broker.api.event_schemas import ANSWER, CLOUD_EVENT, EVENTS_BODY, RUN_EVENT
from broker.api.problems import PROBLEM, problem_body
from broker.core.errors import BacklogFull, EventRejected
from broker.core.events import Event, parse_events
from broker.core.strict_json import BodyRefused, read_body, shown
from broker.ingest.auth import Authenticator, AuthError, Forbidden, Producer
from broker.ingest.cloudevents import is_cloudevent, read_cloudevents
from broker.ingest.intake import IngestResult, ingest
from broker.ingest.openlineage import translate
from broker.matching.matcher import Matcher

router = APIRouter(tags=["events"])
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass
class Answer:
    status: int
    body: bytes
    media_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def _problem(status: int, title: str, detail: str, **extra: Any) -> Answer:
    body = problem_body(status, title, detail, extra.pop("errors", None))
    return Answer(status, json.dumps(body).encode(), PROBLEM, extra.pop("headers", {}))


class _Refused(Exception):
    """A request answered with a problem before anything is written."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer


# (body JSON, settings, headers) -> the events in it, and anything more to answer.
Reader = Callable[[Any, Any, Mapping[str, str]], tuple[list[Event], dict[str, Any]]]


def read_events(
    data: Any, settings: Any, headers: Mapping[str, str]
) -> tuple[list[Event], dict[str, Any]]:
    """POST /v1/events: one event or {"events": [...]}, or CloudEvents (either mode)."""
    if is_cloudevent(headers):
        return read_cloudevents(data, headers, settings.api.max_batch), {}
    return parse_events(data, settings.api.max_batch), {}


async def answer(
    runtime: Any,
    matcher: Matcher,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    read: Reader = read_events,
) -> Answer:
    """Authenticate, validate, route and append the events in `body`: all of POST
    /v1/events (and, with another `read`, of POST /v1/openlineage). Every refusal comes
    before the append, so nothing is ever half-written."""
    try:
        producer = await _authenticate(runtime, headers or {}, body)
        events, extra = _parse(body, runtime.settings, read, headers or {})
        if producer is not None and (outside := runtime.auth.refusals(producer, events)):
            detail = "; ".join(reason for _, reason in outside)
            return _problem(403, "Outside the token's scope", detail, errors=outside)
        if events:
            result = await ingest(runtime.store, events, route=matcher.route)
        else:  # nothing to append (an OpenLineage START, say)
            result = IngestResult(routes=[])
    except _Refused as refused:
        return refused.answer
    except BacklogFull as exc:
        return _problem(
            429, "Backlog full", str(exc), headers={"Retry-After": str(exc.retry_after)}
        )
    return Answer(202, json.dumps(result.as_dict() | extra).encode())


def _parse(
    body: bytes, settings: Any, read: Reader, headers: Mapping[str, str]
) -> tuple[list[Event], dict[str, Any]]:
    if len(body) > settings.api.max_body_bytes:
        raise _Refused(_too_large(len(body), settings.api.max_body_bytes))
    if (refusal := _not_json(headers.get("content-type", ""))) is not None:
        raise _Refused(refusal)
    try:
        data = read_body(body)
    except BodyRefused as exc:
        raise _Refused(_problem(400, exc.title, str(exc), errors=exc.errors)) from exc
    try:
        return read(data, settings, headers)
    except EventRejected as exc:
        raise _Refused(_problem(422, "Invalid event", str(exc), errors=exc.errors)) from exc


_ACCEPTED_TYPES = (
    "application/json, application/cloudevents+json, application/cloudevents-batch+json"
)


def _not_json(content_type: str) -> Answer | None:
    """The 415 for a Content-Type other than JSON (application/json, application/*+json)
    in UTF-8; None when it is JSON, or not given."""
    kind, *params = content_type.split(";")
    kind = kind.strip().lower()
    json_like = kind.startswith("application/") and kind.endswith("+json")
    if kind and kind != "application/json" and not json_like:
        return _unsupported(f"{shown(repr(content_type))} is not JSON; send "
                            "application/json (or any application/*+json)")  # fmt: skip
    for param in params:
        name, _, value = param.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in ("utf-8", "utf8"):
            return _unsupported(f"charset {shown(repr(charset))} is not read; send UTF-8")
    return None


def _unsupported(why: str) -> Answer:
    accept = {"Accept-Post": _ACCEPTED_TYPES}
    return _problem(415, "Unsupported media type", f"Content-Type: {why}",
                    errors=[("content-type", why)], headers=accept)  # fmt: skip


async def _authenticate(runtime: Any, headers: Mapping[str, str], body: bytes) -> Producer | None:
    """The producer the request speaks for; None when nobody is asked (no producers
    configured, or `auth: off`)."""
    auth: Authenticator = runtime.auth
    if not auth.required:
        return None
    try:
        return await auth.authenticate(headers, body, runtime.store.first_use)
    except Forbidden as exc:
        raise _Refused(_problem(403, "Forbidden", str(exc))) from exc
    except AuthError as exc:
        challenge = {"WWW-Authenticate": 'Bearer realm="baton"'}
        raise _Refused(_problem(401, "Unauthorized", str(exc), headers=challenge)) from exc


def _too_large(size: int, limit: int) -> Answer:
    return _problem(413, "Body too large", f"the body is {size} bytes; the limit is {limit}")


@router.post(
    "/v1/events",
    status_code=202,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": EVENTS_BODY},
                "application/cloudevents+json": {"schema": CLOUD_EVENT},
                "application/cloudevents-batch+json": {
                    "schema": {
                        "type": "array",
                        "items": CLOUD_EVENT,
                        "minItems": 1,
                        "maxItems": 1000,
                    }
                },
            },
        }
    },
    responses={
        202: {
            "description": "Durably in the stream: accepted and duplicate event ids, and "
            "per event the contracts it feeds and those it cannot, with the reason",
            "content": {"application/json": {"schema": ANSWER}},
        },
        400: {"description": "Not strict JSON; problem details name each place"},
        401: {"description": "No producer token or valid signature"},
        403: {"description": "An event outside the producer's dataset or partition scope"},
        413: {"description": "Body over the size limit"},
        415: {"description": "A Content-Type that is not JSON"},
        422: {"description": "A field is invalid; problem details name each"},
        429: {"description": "The events backlog is over its limit"},
    },
)
async def post_events(request: Request) -> Response:
    return await _respond(request, read_events)


async def _respond(request: Request, read: Reader) -> Response:
    """The framework route's side of `answer`: a declared body over the limit is
    refused before it is read."""
    runtime = request.app.state.runtime
    declared = request.headers.get("content-length", "")
    limit = runtime.settings.api.max_body_bytes
    # Headers come decoded as latin-1, and '²' is a digit to str.isdigit.
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        result = _too_large(int(declared), limit)
    else:
        matcher = request.app.state.contracts.matcher  # of the moment: reloads swap it
        result = await answer(runtime, matcher, await request.body(),
                              _request_headers(request.headers), read)  # fmt: skip
    return Response(result.body, result.status, result.headers, result.media_type)


_HEADERS = (
    "authorization", "x-baton-signature", "x-baton-timestamp", "x-baton-producer",
    "content-type",
)  # fmt: skip


def _request_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """What `answer` reads: credentials, the content type and CloudEvents attributes."""
    return {
        name: value for name, value in headers.items()
        if name in _HEADERS or name.startswith("ce-")
    }  # fmt: skip


class EventsFastPath:
    """ASGI middleware: `POST /v1/events` straight to `answer`, everything else on."""

    def __init__(
        self, app: Callable[[Scope, Receive, Send], Awaitable[None]], runtime: Any
    ) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/v1/events":
            await self.app(scope, receive, send)
            return
        result = await self._answer(scope, receive)
        headers = [(b"content-type", result.media_type.encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in result.headers.items()]
        headers.append((b"content-length", str(len(result.body)).encode()))
        await send({"type": "http.response.start", "status": result.status, "headers": headers})
        await send({"type": "http.response.body", "body": result.body})

    async def _answer(self, scope: Scope, receive: Receive) -> Answer:
        limit = self.runtime.settings.api.max_body_bytes
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            return _too_large(int(declared), limit)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return _too_large(size, limit)
            chunks.append(chunk)
            more = message.get("more_body", False)
        raw = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        matcher = scope["app"].state.contracts.matcher  # of the moment: reloads swap it
        return await answer(self.runtime, matcher, b"".join(chunks), _request_headers(raw))


def read_openlineage(
    data: Any, settings: Any, headers: Mapping[str, str]
) -> tuple[list[Event], dict[str, Any]]:
    events, ignored = translate(data, settings.openlineage)
    if len(events) > settings.api.max_batch:
        raise EventRejected([("outputs", f"{len(events)} outputs; the limit is "
                                         f"{settings.api.max_batch} per request")])  # fmt: skip
    return events, {"ignored": ignored}


@router.post(
    "/v1/openlineage",
    status_code=202,
    tags=["events"],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            RUN_EVENT,
                            {"type": "array", "items": RUN_EVENT, "minItems": 1},
                        ]
                    }
                }
            },
        }
    },
    responses={
        202: {
            "description": "Accepted and duplicate event ids, where each event goes, and "
            "how many run events were ignored (START, RUNNING, OTHER)",
            "content": {"application/json": {"schema": ANSWER}},
        },
        400: {"description": "Not strict JSON; problem details name each place"},
        401: {"description": "No producer token or valid signature"},
        403: {"description": "An output dataset outside the producer's scope"},
        413: {"description": "Body over the size limit"},
        415: {"description": "A Content-Type that is not JSON"},
        422: {"description": "Not a run event; problem details name each field"},
        429: {"description": "The events backlog is over its limit"},
    },
)
async def post_openlineage(request: Request) -> Response:
    """OpenLineage RunEvents: each output of a COMPLETE (FAIL, ABORT) run event becomes a
    success (failed) event for its dataset."""
    return await _respond(request, read_openlineage)
