"""The FastAPI application factory: a composition root for the HTTP side."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response

from broker.api import alerts, backfills, contracts, dlq, events, metrics
from broker.api.problems import problem
from broker.api.status import status_page
from broker.events import Event
from broker.runtime import Contracts, Runtime


def create_app(runtime: Runtime, loaded: Contracts) -> FastAPI:
    app = FastAPI(
        title="Baton",
        version="0.1.0",
        description="Event-driven cross-DAG trigger broker.",
    )
    app.state.runtime = runtime
    app.state.contracts = loaded
    app.include_router(events.router)
    app.add_middleware(events.EventsFastPath, runtime=runtime)
    app.include_router(contracts.router)
    app.include_router(dlq.router)
    app.include_router(alerts.router)
    app.include_router(backfills.router)
    app.include_router(metrics.router)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in exc.errors()]
        return problem(422, "Invalid request", "the request has invalid fields", errors)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz() -> Response:
        try:
            await runtime.redis.ping()
        except Exception as exc:  # any failure to reach Redis means not ready
            return problem(503, "Not ready", f"Redis is unreachable: {exc}")
        holder = getattr(app.state, "holder", None)
        body = {"status": "ready", "contracts_version": app.state.contracts.version,
                "contracts_reload_error": holder.error if holder else None}  # fmt: skip
        return JSONResponse(body)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(await status_page(runtime, app.state.contracts))

    _document_event_schema(app)
    return app


def _document_event_schema(app: FastAPI) -> None:
    """Put the Event model into the OpenAPI components that /v1/events refers to."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components["Event"] = Event.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
