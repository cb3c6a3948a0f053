"""The `webhook` target: POST (or any method) a rendered body to a URL.

Every request carries `Idempotency-Key: <trigger id>`; with a secret configured it is
signed: `X-Baton-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">` and
`X-Baton-Timestamp: <unix seconds>`, so a receiver can reject forgeries and replays.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import httpx

from adapters._http import raise_for_status, translate_errors
from broker.dispatch.target import Receipt, TriggerRequest
from broker.settings import WebhookTarget as WebhookConfig


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def default_body(request: TriggerRequest) -> dict[str, Any]:
    return {
        "trigger_id": request.trigger_id,
        "contract": request.contract,
        "partition": request.partition or None,
        "generation": request.generation,
        "inputs": request.context.get("inputs", {}),
    }


class WebhookTarget:
    def __init__(self, name: str, config: WebhookConfig, client: httpx.AsyncClient) -> None:
        self.name = name
        self.config = config
        self.client = client

    async def trigger(self, request: TriggerRequest) -> Receipt:
        spec = request.spec
        body = spec.get("body", default_body(request))
        content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        headers = {
            "Content-Type": "application/json",
            **self.config.headers,
            **spec.get("headers", {}),
            "Idempotency-Key": request.trigger_id,
            "X-Baton-Trigger-Id": request.trigger_id,
        }
        if self.config.secret is not None:
            stamp = str(int(time.time()))
            headers["X-Baton-Timestamp"] = stamp
            headers["X-Baton-Signature"] = sign(
                self.config.secret.get_secret_value(), stamp, content
            )
        url = spec.get("url") or self.config.url
        with translate_errors(f"webhook {self.name}"):
            response = await self.client.request(
                spec.get("method", "POST"),
                url,
                content=content,
                headers=headers,
                timeout=self.config.timeout,
            )
        raise_for_status(f"webhook {self.name}", response)
        return Receipt(ref=response.headers.get("X-Request-Id", request.trigger_id), url=url)

    async def aclose(self) -> None:
        await self.client.aclose()
