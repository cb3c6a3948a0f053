"""Run Baton's long-lived parts (API, worker) in one asyncio loop until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import signal
from collections.abc import Coroutine, Generator
from typing import Any

import uvicorn

from adapters.registry import build_alerts, build_targets
from broker.api.app import create_app
from broker.errors import ConfigError
from broker.runtime import Contracts, Runtime, load_checked
from broker.settings import Settings
from broker.worker import Worker

log = logging.getLogger("baton")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: Baton stops all parts together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def check_exposure(settings: Settings) -> None:
    """Unauthenticated ingestion only on loopback, like Redis's protected mode."""
    if settings.producers or settings.auth == "off":
        return
    host = settings.api.host
    loopback = host == "localhost" or _is_loopback(host)
    if not loopback:
        raise ConfigError(
            f"api.host is {host}, not loopback, and no producers are configured: "
            "configure producer tokens, or set `auth: off` to accept anyone"
        )
    log.warning("no producers configured: accepting unauthenticated events on %s only", host)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def serve(settings: Settings, *, api: bool, worker: bool, role: str = "all") -> None:
    if api:
        check_exposure(settings)
    contracts = load_checked(settings)
    runtime = await Runtime.open(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Everything loaded so far lives as long as the process: keep it out of the
    # collector's way, so a full collection does not pause the event path.
    gc.collect()
    gc.freeze()
    parts: list[Coroutine[Any, Any, None]] = []
    targets = build_targets(settings) if worker else {}
    alerts = build_alerts(settings) if worker else None
    if worker:
        match, dispatch = role in ("all", "match"), role in ("all", "dispatch")
        parts.append(Worker(runtime, contracts, targets, alerts).run(stop, match, dispatch))
    if api:
        parts.append(_serve_api(runtime, contracts, stop))
    try:
        await asyncio.gather(*parts)
    finally:
        stop.set()
        for target in targets.values():
            await target.aclose()
        if alerts is not None:
            await alerts.aclose()
        await runtime.close()


async def _serve_api(runtime: Runtime, contracts: Contracts, stop: asyncio.Event) -> None:
    settings = runtime.settings
    config = uvicorn.Config(
        create_app(runtime, contracts),
        host=settings.api.host,
        port=settings.api.port,
        log_level="warning",
        access_log=False,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    log.info("API on http://%s:%d", settings.api.host, settings.api.port)
    await stop.wait()
    server.should_exit = True
    await task
