"""GET /v1/audit: the audit trail, newest first (see broker.control.audit)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

router = APIRouter(tags=["audit"])


@router.get("/v1/audit")
async def list_audit(request: Request, limit: int = Query(100, ge=1, le=10_000)) -> dict[str, Any]:
    """Each entry: `at`, `actor` (a principal, `cli:<user>@<host>`, or `system`), `action`
    (backfill.start, dlq.retry, contracts.reload, contract.pause, contract.resume,
    session.sign_in, session.sign_out), `subject`, `outcome`, `detail`, `via`, `remote`."""
    return {"audit": await request.app.state.audit.recent(limit)}
