"""`baton sink`: a small webhook receiver for trying Baton out and for tests.

It verifies `X-Baton-Signature` when given the secret (a delivery that fails is refused
with 401), prints each delivery, and lists what it received at `GET /` as indented JSON,
newest last (`?path=/hooks/x`: one path; `?last=N`: the newest N), each delivery with
the signature it carried and whether it was verified. Deliveries with an
`Idempotency-Key` it has already seen are recorded as repeats, the way a real target
would deduplicate them.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from adapters.webhook import sign

log = logging.getLogger("baton.sink")


def create_sink(secret: str | None = None, keep: int = 1000, delay: float = 0.0) -> FastAPI:
    app = FastAPI(title="Baton dev sink")
    received: list[dict[str, Any]] = []
    app.state.received = received

    @app.get("/")
    async def listing(last: int = 0, path: str | None = None) -> JSONResponse:
        shown = [r for r in received if path is None or r["path"] == path]
        shown = shown[-last:] if last > 0 else shown
        keys = {r["idempotency_key"] for r in shown}
        return _Pretty({"count": len(shown), "distinct": len(keys), "deliveries": shown})

    @app.api_route("/{path:path}", methods=["POST", "PUT", "PATCH"])
    async def deliver(path: str, request: Request) -> JSONResponse:
        body = await request.body()
        key = request.headers.get("idempotency-key", "")
        if secret is not None and not _signed(secret, request, body):
            log.warning("rejected delivery %s: bad signature", key)
            return JSONResponse({"error": "bad signature"}, status_code=401)
        repeat = any(r["idempotency_key"] == key for r in received)
        # Checked when a secret is given (a bad signature was refused above).
        signed = {"signature": request.headers.get("x-baton-signature"),
                  "verified": None if secret is None else True}  # fmt: skip
        received.append(_delivery(path, key, repeat, body) | signed)
        del received[:-keep]
        print(f"sink: {'repeat ' if repeat else ''}delivery {key} -> /{path}", flush=True)
        if delay:  # answer late, to let tests kill a caller mid-call
            await asyncio.sleep(delay)
        return JSONResponse({"received": key, "repeat": repeat})

    return app


class _Pretty(JSONResponse):
    """Indented, so that `curl` shows it readably."""

    def render(self, content: Any) -> bytes:
        return (json.dumps(content, indent=2, ensure_ascii=False) + "\n").encode()


def _signed(secret: str, request: Request, body: bytes) -> bool:
    stamp = request.headers.get("x-baton-timestamp", "")
    given = request.headers.get("x-baton-signature", "")
    # Bytes: compare_digest refuses str with non-ASCII characters (a forged header).
    return hmac.compare_digest(given.encode(), sign(secret, stamp, body).encode())


def _delivery(path: str, key: str, repeat: bool, body: bytes) -> dict[str, Any]:
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        parsed = body.decode(errors="replace")
    return {"path": "/" + path, "idempotency_key": key, "repeat": repeat, "body": parsed}
