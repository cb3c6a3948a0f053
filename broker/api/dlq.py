"""Dead letters over HTTP: the twins of `baton dlq list` and `baton dlq retry`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from broker.api.access import actor, role
from broker.api.problems import problem
from broker.followup import dlq

router = APIRouter(tags=["dead letters"])


@router.get("/v1/dlq")
async def list_dead_letters(
    request: Request, limit: int = Query(100, ge=1, le=10_000)
) -> dict[str, Any]:
    return {"dead_letters": await dlq.list_dead(request.app.state.runtime.store, limit)}


@router.post(
    "/v1/dlq/{trigger_id}/retry",
    status_code=202,
    openapi_extra=role("operator"),
    responses={
        404: {
            "description": "The trigger is unknown or not failed",
            "content": {"application/problem+json": {"schema": {"type": "object"}}},
        }
    },
)
async def retry_dead_letter(trigger_id: str, request: Request) -> Response:
    result = await dlq.retry(request.app.state.runtime.store, [trigger_id])
    outcome = "refused" if result["not_dead"] else "ok"
    await request.app.state.audit.record(actor(request), "dlq.retry", trigger_id, outcome,
                                         via="http")  # fmt: skip
    if result["not_dead"]:
        return problem(404, "Not a dead letter", f"trigger {trigger_id!r} is unknown or not failed")
    return JSONResponse(result, status_code=202)
