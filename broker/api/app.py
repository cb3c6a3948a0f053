"""The FastAPI application factory: a composition root for the HTTP side."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response

from broker.api import alerts, audit, backfills, contracts, dlq, events, metrics, sessions
from broker.api.access import ROLE_KEY, AccessControl, Policy, flat, role
from broker.api.guard import RETRY_AFTER_S, Guard
from broker.api.openapi import document
from broker.api.problems import problem
from broker.api.status import status_page
from broker.control.audit import AuditTrail
from broker.matching.loaded import Contracts
from broker.runtime import Runtime
from broker.state.duties import report as duty_report
from broker.state.health import RedisHealth

log = logging.getLogger("baton.api")

# The ways events come in: each checks its producer itself, with the body in hand.
_PUBLISH = {("/v1/events", "POST"), ("/v1/openlineage", "POST")}


def create_app(runtime: Runtime, loaded: Contracts) -> FastAPI:
    app = FastAPI(
        title="Baton",
        version="0.1.0",
        description="Event-driven cross-DAG trigger broker.",
    )
    app.state.runtime = runtime
    app.state.contracts = loaded
    app.state.audit = AuditTrail(runtime.redis, runtime.store.keys)
    ttl = int(runtime.settings.api.session_ttl.total_seconds())
    app.state.sessions = sessions.SessionStore(runtime.redis, runtime.store.keys, ttl)
    app.include_router(events.router)
    app.add_middleware(events.EventsFastPath, runtime=runtime)
    for router in (contracts.router, dlq.router, alerts.router, backfills.router,
                   metrics.router, audit.router, sessions.router):  # fmt: skip
        app.include_router(router)
    _health(app, runtime)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in exc.errors()]
        return problem(422, "Invalid request", "the request has invalid fields", errors)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(await status_page(runtime, app.state.contracts, request))

    _declare_publishing(app)
    policy = Policy(app.routes)
    app.add_middleware(
        AccessControl,
        auth=lambda: runtime.auth,
        sessions=app.state.sessions,
        policy=lambda: policy,
        public_metrics=runtime.settings.api.public_metrics,
    )
    app.state.redis_health = RedisHealth(runtime.redis, log, "the API answers 503")
    api = runtime.settings.api
    app.add_middleware(Guard, health=app.state.redis_health,
                       body_timeout_s=api.body_timeout.total_seconds(),
                       max_pending_bodies=api.max_pending_bodies)  # fmt: skip
    document(app, policy)
    return app


def _health(app: FastAPI, runtime: Runtime) -> None:
    @app.get("/healthz", tags=["health"], openapi_extra=role("public"))
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], openapi_extra=role("public"))
    async def readyz() -> Response:
        try:
            await runtime.redis.ping()
        except Exception as exc:  # any failure to reach Redis means not ready
            return problem(503, "Not ready", f"Redis is unreachable: {exc}",
                           headers={"Retry-After": str(RETRY_AFTER_S)})  # fmt: skip
        holder = getattr(app.state, "holder", None)
        duties = await duty_report(runtime.redis, runtime.store.keys, runtime.settings.targets)
        # Still 200 with a duty behind: the API takes events as well as ever, and a
        # worker that is behind catches up sooner when nothing is turned away.
        late = sorted(name for name, duty in duties.items() if duty["state"] != "ok")
        body = {"status": "behind" if late else "ready", "behind": late,
                "contracts_version": app.state.contracts.version,
                "contracts_reload_error": holder.error if holder else None,
                "duties": duties}  # fmt: skip
        return JSONResponse(body)


def _declare_publishing(app: FastAPI) -> None:
    for route in flat(app.routes):
        methods = getattr(route, "methods", None) or set()
        path = getattr(route, "path", "")
        if any((path, method) in _PUBLISH for method in methods):
            extra: dict[str, Any] = dict(getattr(route, "openapi_extra", None) or {})
            route.openapi_extra = {**extra, ROLE_KEY: "publish"}  # type: ignore[attr-defined]
