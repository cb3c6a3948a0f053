"""The webhook target: signature, idempotency key, and how failures are classified."""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx
import pytest

from adapters.webhook import WebhookTarget
from broker.dispatch.target import TriggerRequest
from broker.errors import TargetRejected, TargetUnavailable
from broker.settings import WebhookTarget as WebhookConfig

REQUEST = TriggerRequest(
    trigger_id="baton:report:2026-11-23:0",
    contract="report",
    partition="2026-11-23",
    generation=0,
    spec={"body": {"day": "2026-11-23"}, "headers": {"X-Team": "analytics"}},
)


def target(handler: httpx.MockTransport, secret: str | None = "k") -> WebhookTarget:
    config = WebhookConfig(kind="webhook", url="http://hooks.test/in", secret=secret)
    return WebhookTarget("hook", config, httpx.AsyncClient(transport=handler))


async def test_a_signed_request_carries_the_trigger_id_as_idempotency_key() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    receipt = await target(httpx.MockTransport(handle)).trigger(REQUEST)
    request = seen[0]
    assert request.headers["idempotency-key"] == REQUEST.trigger_id
    assert request.headers["x-team"] == "analytics"
    assert json.loads(request.content) == {"day": "2026-11-23"}
    stamp = request.headers["x-baton-timestamp"]
    mac = hmac.new(b"k", stamp.encode() + b"." + request.content, hashlib.sha256)
    assert request.headers["x-baton-signature"] == "sha256=" + mac.hexdigest()
    assert receipt.ref == REQUEST.trigger_id


async def test_without_a_secret_nothing_is_signed() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    await target(httpx.MockTransport(handle), secret=None).trigger(REQUEST)
    assert "x-baton-signature" not in seen[0].headers


@pytest.mark.parametrize("status", [500, 502, 503, 429, 408])
async def test_server_errors_and_throttling_are_transient(status: int) -> None:
    hook = target(httpx.MockTransport(lambda r: httpx.Response(status, text="busy")))
    with pytest.raises(TargetUnavailable, match=f"HTTP {status}: busy"):
        await hook.trigger(REQUEST)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_client_errors_are_permanent_and_quote_the_target(status: int) -> None:
    hook = target(httpx.MockTransport(lambda r: httpx.Response(status, text="no such dag")))
    with pytest.raises(TargetRejected, match="no such dag"):
        await hook.trigger(REQUEST)


async def test_a_dropped_connection_is_transient() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection reset", request=request)

    with pytest.raises(TargetUnavailable, match="ConnectError"):
        await target(httpx.MockTransport(handle)).trigger(REQUEST)


async def test_a_timeout_is_transient() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(TargetUnavailable, match="timed out"):
        await target(httpx.MockTransport(handle)).trigger(REQUEST)
