"""RFC 9457 problem details: every rejection names what was wrong and where."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

PROBLEM = "application/problem+json"


def problem(
    status: int,
    title: str,
    detail: str,
    errors: list[tuple[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = problem_body(status, title, detail, errors)
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def problem_body(
    status: int, title: str, detail: str, errors: list[tuple[str, str]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"https://baton.dev/problems/{title.lower().replace(' ', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = [{"field": field, "message": message} for field, message in errors]
    return body
