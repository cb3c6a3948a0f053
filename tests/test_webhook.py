"""The webhook target against a real local HTTP server that misbehaves on request."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from adapters.http1 import Http1
from adapters.webhook import WebhookTarget
from broker.core.errors import TargetRejected, TargetUnavailable
from broker.core.settings import WebhookTarget as WebhookConfig
from broker.dispatch.target import TriggerRequest
from broker.embedded_redis import free_port

REQUEST = TriggerRequest(
    trigger_id="baton:report:2026-11-23:0",
    contract="report",
    partition="2026-11-23",
    generation=0,
    spec={"body": {"day": "2026-11-23"}, "headers": {"X-Team": "analytics"}},
)


@dataclass
class Receiver:
    """A real HTTP server; `answer` decides each response (the fault to inject)."""

    url: str
    seen: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    answer: Callable[[], web.StreamResponse] = lambda: web.Response(status=200)
    delay: float = 0.0


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    port = free_port()
    box = Receiver(f"http://127.0.0.1:{port}/in")

    async def handle(request: web.Request) -> web.StreamResponse:
        box.seen.append((dict(request.headers), await request.read()))
        await asyncio.sleep(box.delay)
        return box.answer()

    app = web.Application()
    app.router.add_post("/in", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield box
    await runner.cleanup()


async def fire(url: str, secret: str | None = "k", timeout: float = 5.0) -> str:
    config = WebhookConfig(kind="webhook", url=url, secret=secret, timeout=timeout)
    target = WebhookTarget("hook", config, Http1())
    try:
        receipt = await target.trigger(REQUEST)
    finally:
        await target.aclose()
    return receipt.ref


async def test_a_signed_request_carries_the_trigger_id_as_idempotency_key(
    receiver: Receiver,
) -> None:
    ref = await fire(receiver.url)
    headers, body = receiver.seen[0]
    assert headers["Idempotency-Key"] == REQUEST.trigger_id
    assert headers["X-Team"] == "analytics"
    assert json.loads(body) == {"day": "2026-11-23"}
    stamp = headers["X-Baton-Timestamp"]
    mac = hmac.new(b"k", stamp.encode() + b"." + body, hashlib.sha256)
    assert headers["X-Baton-Signature"] == "sha256=" + mac.hexdigest()
    assert ref == "HTTP 200"


async def test_the_reference_is_what_the_receiver_answered(receiver: Receiver) -> None:
    receiver.answer = lambda: web.json_response({"received": "yes", "queue": 3}, status=202)
    assert await fire(receiver.url) == 'HTTP 202: {"received": "yes", "queue": 3}'
    receiver.answer = lambda: web.Response(text="ok\n" + "x" * 500)
    ref = await fire(receiver.url)
    assert ref.startswith("HTTP 200: ok xxx") and len(ref) == len("HTTP 200: ") + 200
    receiver.answer = lambda: web.Response(text="ok", headers={"X-Request-Id": "req-7"})
    assert await fire(receiver.url) == "req-7"


async def test_without_a_secret_nothing_is_signed(receiver: Receiver) -> None:
    await fire(receiver.url, secret=None)
    assert "X-Baton-Signature" not in receiver.seen[0][0]


@pytest.mark.parametrize("status", [500, 502, 503, 429, 408])
async def test_server_errors_and_throttling_are_transient(receiver: Receiver, status: int) -> None:
    receiver.answer = lambda: web.Response(status=status, text="busy")
    with pytest.raises(TargetUnavailable, match=f"HTTP {status}: busy"):
        await fire(receiver.url)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_client_errors_are_permanent_and_quote_the_target(
    receiver: Receiver, status: int
) -> None:
    receiver.answer = lambda: web.Response(status=status, text="no such dag")
    with pytest.raises(TargetRejected, match="no such dag"):
        await fire(receiver.url)


async def test_a_refused_connection_is_transient() -> None:
    with pytest.raises(TargetUnavailable, match="webhook hook"):
        await fire(f"http://127.0.0.1:{free_port()}/in")


async def test_a_timeout_is_transient(receiver: Receiver) -> None:
    receiver.delay = 2.0
    with pytest.raises(TargetUnavailable, match="timed out"):
        await fire(receiver.url, timeout=0.3)
