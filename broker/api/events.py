"""POST /v1/events: one event or a batch, validated, made durable, answered per SPEC.

Read as raw bytes (not through FastAPI's body model) so the size limit is enforced
before parsing and every field error can be named precisely.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from broker.api.problems import problem
from broker.errors import BacklogFull, EventRejected
from broker.events import Event, parse_events
from broker.ingest import ingest

router = APIRouter(tags=["events"])

_BODY_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {"$ref": "#/components/schemas/Event"},
        {
            "type": "object",
            "properties": {
                "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}}
            },
            "required": ["events"],
            "additionalProperties": False,
        },
    ]
}


@router.post(
    "/v1/events",
    status_code=202,
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": _BODY_SCHEMA}}}
    },
    responses={
        202: {"description": "Durably in the stream: accepted and duplicate event ids"},
        400: {"description": "Not JSON"},
        413: {"description": "Body over the size limit"},
        422: {"description": "A field is invalid; problem details name each"},
        429: {"description": "The events backlog is over its limit"},
    },
)  # fmt: skip
async def post_events(request: Request) -> Response:
    settings = request.app.state.runtime.settings
    limit = settings.api.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return _too_large(int(declared), limit)
    body = await request.body()
    if len(body) > limit:
        return _too_large(len(body), limit)
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return problem(400, "Malformed JSON", f"the body is not JSON: {exc}", [("body", str(exc))])
    try:
        events = parse_events(data, settings.api.max_batch)
    except EventRejected as exc:
        return problem(422, "Invalid event", str(exc), exc.errors)
    return await _append(request, events)


async def _append(request: Request, events: list[Event]) -> Response:
    try:
        result = await ingest(request.app.state.runtime.store, events)
    except BacklogFull as exc:
        return problem(429, "Backlog full", str(exc), headers={"Retry-After": str(exc.retry_after)})
    return JSONResponse(result.as_dict(), status_code=202)


def _too_large(size: int, limit: int) -> Response:
    return problem(413, "Body too large", f"the body is {size} bytes; the limit is {limit}")
