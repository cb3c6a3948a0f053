"""An alert sink that fails is a transient failure (the alert is kept and sent again),
whichever way it fails: refused, cut off before answering, or a 5xx; a 4xx is permanent.
aiohttp, the sinks' client, is imported only where alerts are sent."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Callable

import pytest

from adapters.registry import build_alerts
from broker.core.errors import TargetRejected, TargetUnavailable
from broker.core.settings import Settings
from broker.embedded_redis import free_port


def test_a_process_that_sends_no_alerts_never_imports_aiohttp() -> None:
    code = "import sys, broker.serve, broker.cli.main; print('aiohttp' in sys.modules)"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True)  # fmt: skip
    assert shown.stdout.strip() == "False"


async def _serve(answer: Callable[[asyncio.StreamWriter], None]) -> AsyncIterator[str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        answer(writer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/alert"


def _status(code: int) -> Callable[[asyncio.StreamWriter], None]:
    return lambda w: w.write(f"HTTP/1.1 {code} X\r\nContent-Length: 2\r\n\r\nno".encode())


async def _send(url: str) -> None:
    """Send one alert to a sink at `url`, through the sender the config builds."""
    sender = build_alerts(Settings.model_validate({"alerts": [{"kind": "webhook", "url": url}]}))
    assert sender is not None
    try:
        await sender.send("a1", "late", {"contract": "c"})
    finally:
        await sender.aclose()


@pytest.mark.parametrize(("answer", "error"), [
    (lambda w: None, TargetUnavailable),  # cut off: aiohttp's ServerDisconnectedError
    (_status(503), TargetUnavailable),
    (_status(400), TargetRejected),
])  # fmt: skip
async def test_a_failing_sink_is_transient_unless_it_refuses_the_alert(
    answer: Callable[[asyncio.StreamWriter], None], error: type[Exception]
) -> None:
    async for url in _serve(answer):
        with pytest.raises(error):
            await _send(url)


async def test_a_sink_that_refuses_the_connection_is_transient() -> None:
    with pytest.raises(TargetUnavailable):
        await _send(f"http://127.0.0.1:{free_port()}/alert")
