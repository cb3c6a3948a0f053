"""Backfills over HTTP: the twins of `baton backfill` and `baton backfill status`."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from broker.api.access import actor, role
from broker.api.problems import problem
from broker.time.backfill import BackfillRejected, dry_run, status, submit

router = APIRouter(tags=["backfills"])
_PROBLEM = {"content": {"application/problem+json": {"schema": {"type": "object"}}}}


class BackfillRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    contract: str = Field(min_length=1, max_length=128)
    start: str = Field(alias="from", min_length=1, max_length=128)
    end: str = Field(alias="to", min_length=1, max_length=128)
    order: Literal["newest-first", "oldest-first"] = "newest-first"
    max_in_flight: int = Field(4, ge=1, le=10_000)
    force: bool = False
    dry_run: bool = False


@router.post(
    "/v1/backfills",
    status_code=201,
    openapi_extra=role("operator"),
    responses={
        200: {"description": "With dry_run: the plan and each partition's readiness"},
        404: {"description": "Unknown contract", **_PROBLEM},
        422: {"description": "A range that cannot be planned", **_PROBLEM},
    },
)
async def start_backfill(body: BackfillRequest, request: Request) -> Response:
    contract = request.app.state.contracts.by_name().get(body.contract)
    if contract is None:
        return problem(404, "Unknown contract", f"no contract named {body.contract!r} is loaded")
    store = request.app.state.runtime.store
    try:
        if body.dry_run:
            plan = await dry_run(store, contract, body.start, body.end, order=body.order,
                                 force=body.force)  # fmt: skip
            return JSONResponse({"plan": plan}, status_code=200)
        backfill = await submit(store, contract, body.start, body.end, order=body.order,
                                max_in_flight=body.max_in_flight, force=body.force)  # fmt: skip
    except BackfillRejected as exc:
        return problem(422, "Backfill rejected", str(exc), [("from", str(exc))])
    detail = f"{body.start}..{body.end} order={body.order} force={body.force}"
    await request.app.state.audit.record(
        actor(request),
        "backfill.start",
        backfill.id,
        "ok",
        detail=f"{body.contract} {detail}",
        via="http",
    )
    return JSONResponse(await status(store, backfill), status_code=201)


@router.get("/v1/backfills")
async def list_backfills(request: Request, limit: int = Query(20, ge=1, le=1000)) -> dict[str, Any]:
    store = request.app.state.runtime.store
    return {"backfills": [await status(store, b) for b in await store.backfills.recent(limit)]}


@router.get("/v1/backfills/{backfill_id}", responses={404: {"description": "Unknown", **_PROBLEM}})
async def get_backfill(backfill_id: str, request: Request) -> Response:
    store = request.app.state.runtime.store
    found = await store.backfills.get(backfill_id)
    if found is None:
        return problem(404, "Unknown backfill", f"no backfill {backfill_id!r}")
    return JSONResponse(await status(store, found))
