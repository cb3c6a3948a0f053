"""The OpenAPI document: the Event schema the ways in refer to, and who may call what.

Every operation states its security: `security: []` for the public ones, else a
bearer token or the session cookie (publishing: a producer's token, or a signed
request), with the role it needs in `x-baton-role` and the refusals it can give
(401, 403, and 503 while Redis is unreachable) among its documented answers.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from broker.api.access import ROLE_KEY, Policy
from broker.core.events import Event

_SCHEMES: dict[str, Any] = {
    "bearer": {"type": "http", "scheme": "bearer",
               "description": "A principal's or a producer's token (`principals:`, `producers:`)"},
    "session": {"type": "apiKey", "in": "cookie", "name": "baton_session",
                "description": "Set by signing in at /login; state changes also need X-CSRF-Token"},
    "signature": {"type": "apiKey", "in": "header", "name": "X-Baton-Signature",
                  "description": "HMAC-SHA256 of '<timestamp>.<body>', with X-Baton-Producer"},
}  # fmt: skip
_PROBLEM = {"application/problem+json": {"schema": {"type": "object"}}}
_REFUSALS = {
    "401": "No credential, or one Baton does not know",
    "403": "The credential may not do this (its role, or its producer scope)",
}
_UNAVAILABLE = {
    "description": "Redis is unreachable; try again after Retry-After",
    "content": _PROBLEM,
}


def document(app: FastAPI, policy: Policy) -> None:
    """Build the document once, on first request, with what `app.openapi` leaves out."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            components = schema.setdefault("components", {})
            components.setdefault("schemas", {})["Event"] = Event.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            components["securitySchemes"] = _SCHEMES
            for path, operations in schema.get("paths", {}).items():
                for method, operation in operations.items():
                    _secure(operation, policy.need(method.upper(), _sample(path)))
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _secure(operation: dict[str, Any], need: str) -> None:
    operation[ROLE_KEY] = need
    responses = operation.setdefault("responses", {})
    responses.setdefault("503", _UNAVAILABLE)
    if need == "public":
        operation["security"] = []
        return
    if need == "publish":
        operation["security"] = [{"bearer": []}, {"signature": []}]
    else:
        operation["security"] = [{"bearer": []}, {"session": []}]
    for status, text in _REFUSALS.items():
        responses.setdefault(status, {"description": text, "content": _PROBLEM})


def _sample(path: str) -> str:
    """A concrete path the template matches: `{name}` becomes `x`."""
    out, depth = [], 0
    for char in path:
        if char == "{":
            depth += 1
            out.append("x")
        elif char == "}":
            depth -= 1
        elif depth == 0:
            out.append(char)
    return "".join(out)
