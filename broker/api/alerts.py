"""Alerts over HTTP: missed deadlines and their recoveries, newest first."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

router = APIRouter(tags=["alerts"])


@router.get("/v1/alerts")
async def list_alerts(request: Request, limit: int = Query(100, ge=1, le=10_000)) -> dict[str, Any]:
    """Each alert as queued: `kind` (deadline_missed | deadline_recovered), `contract`,
    `partition`, `deadline`, `at`, and for a recovery the `trigger_id`. Dead letters are
    listed by `GET /v1/dlq`."""
    return {"alerts": await request.app.state.runtime.store.deadlines.alerts(limit)}
