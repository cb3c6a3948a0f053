"""The `webhook` target: POST (or any method) a rendered body to a URL.

Every request carries `Idempotency-Key: <trigger id>`; with a secret configured it is
signed: `X-Baton-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">` and
`X-Baton-Timestamp: <unix seconds>`, so a receiver can reject forgeries and replays.
"""

from __future__ import annotations

import json
import time
from typing import Any

from adapters._http import classify, translate_errors
from adapters.http1 import Http1
from broker.core.settings import WebhookTarget as WebhookConfig
from broker.dispatch.target import Receipt, RunStatus, TriggerRequest
from broker.ingest.auth import signature

# A webhook's run: over when the receiver answered 2xx.
DELIVERED = RunStatus(state="succeeded", detail="delivered")

# The same scheme Baton checks on signed requests coming in (broker.ingest.auth).
sign = signature


def default_body(request: TriggerRequest) -> dict[str, Any]:
    return {
        "trigger_id": request.trigger_id,
        "contract": request.contract,
        "partition": request.partition or None,
        "generation": request.generation,
        "inputs": request.context.get("inputs", {}),
    }


def answered(status: int, text: str, limit: int = 200) -> str:
    """What the receiver answered, as the run's reference: a webhook starts no run of
    its own, so its answer is what `baton triggers` and `explain` can show."""
    words = " ".join(text.split())
    if len(words) > limit:
        words = words[: limit - 1] + "…"
    return f"HTTP {status}: {words}" if words else f"HTTP {status}"


class WebhookTarget:
    def __init__(self, name: str, config: WebhookConfig, http: Http1) -> None:
        self.name = name
        self.config = config
        self.http = http

    def _headers(self, request: TriggerRequest, content: bytes) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            **self.config.headers,
            **request.spec.get("headers", {}),
            "Idempotency-Key": request.trigger_id,
            "X-Baton-Trigger-Id": request.trigger_id,
        }
        if self.config.secret is not None:
            stamp = str(int(time.time()))
            headers["X-Baton-Timestamp"] = stamp
            headers["X-Baton-Signature"] = sign(
                self.config.secret.get_secret_value(), stamp, content
            )
        return headers

    def reads_inputs(self, fields: dict[str, Any]) -> bool:
        """Only the default body (a trigger that gives none) sends the inputs."""
        return "body" not in fields

    async def trigger(self, request: TriggerRequest) -> Receipt:
        body = request.spec["body"] if "body" in request.spec else default_body(request)
        content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        url = request.spec.get("url") or self.config.url
        label = f"webhook {self.name}"
        with translate_errors(label):
            answer = await self.http.request(
                request.spec.get("method", "POST"), url, content,
                self._headers(request, content), self.config.timeout,
            )  # fmt: skip
        text = answer.body.decode(errors="replace")
        ref = answer.headers.get("x-request-id") or answered(answer.status, text)
        classify(label, answer.status, text)
        return Receipt(ref=ref, url=url, finished=DELIVERED)

    async def status(self, ref: str) -> RunStatus:
        """A webhook starts no run Baton can follow: answered is done."""
        return DELIVERED

    async def check(self, spec: dict[str, Any]) -> list[str]:
        return []

    async def aclose(self) -> None:
        await self.http.aclose()
