"""Run Baton's long-lived parts (API, worker) in one asyncio loop until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Coroutine, Generator
from typing import Any

import uvicorn

from adapters.registry import build_alerts, build_owner_alerts, build_targets
from broker.api.app import create_app
from broker.api.guard import guarded_http
from broker.contracts.check import check_key
from broker.contracts.snapshot import Snapshots
from broker.control.apply import ChangeApplier, apply_changes
from broker.control.reload import ContractsHolder, ReloadResult
from broker.core.errors import ConfigError
from broker.core.settings import Settings
from broker.embedded_redis import RedisProcess
from broker.matching.loaded import Contracts, load_checked
from broker.runtime import Runtime
from broker.worker import Worker, consumer_name

log = logging.getLogger("baton")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: Baton stops all parts together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def check_exposure(settings: Settings) -> None:
    """An API open to anyone only on loopback, like Redis's protected mode."""
    if settings.producers or settings.principals or settings.auth == "off":
        return
    host = settings.api.host
    loopback = host == "localhost" or _is_loopback(host)
    if not loopback:
        raise ConfigError(
            f"api.host is {host}, not loopback, and no producers or principals are "
            "configured: configure tokens, or set `auth: off` to accept anyone"
        )
    log.warning("no producers or principals configured: the API answers anyone, on %s only",
                host)  # fmt: skip


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# At start, the snapshot of a set parsed anew is written this long after (100,000
# contracts: ~1.5 s of the GIL, which would otherwise land on the way to ready).
SNAPSHOT_AFTER_S = 10.0


def _load(settings: Settings) -> tuple[Contracts, Snapshots]:
    """The contract set, and its snapshot: what the last run loaded, of the files that
    have not changed since, is not parsed or checked again."""
    snapshots = Snapshots(settings.data_dir, settings.contracts, check_key(settings, os.environ))
    return load_checked(settings, snapshots.restore()), snapshots


async def serve(
    settings: Settings,
    *,
    api: bool,
    worker: bool,
    role: str = "all",
    config_path: str | None = None,
    sibling: bool = False,
) -> None:
    if api:
        check_exposure(settings)
    contracts, snapshots = _load(settings)
    runtime = await Runtime.open(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    holder = ContractsHolder(runtime, contracts, consumer_name())
    # Saved a while after the last change (a newer set replaces a save still waiting):
    # saving 100,000 contracts holds the interpreter ~1.5 s, not to be paid per edit.
    holder.on_swap(lambda fresh: snapshots.saving(fresh.cache, fresh.version, SNAPSHOT_AFTER_S))
    reloads: set[asyncio.Task[ReloadResult]] = set()

    def on_hup() -> None:
        task = asyncio.ensure_future(holder.reload("SIGHUP", "sighup", via="signal"))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    # Everything loaded so far lives as long as the process: keep it out of the
    # collector's way, so a full collection does not pause the event path.
    gc.collect()
    gc.freeze()
    parts: list[Coroutine[Any, Any, None]] = []
    targets = build_targets(settings) if worker else {}
    alerts = build_alerts(settings) if worker else None
    owner_alerts = build_owner_alerts(settings) if worker else {}
    parts.append(holder.watch(stop))
    ended: list[str] = []
    if runtime.embedded is not None:
        parts.append(_watch_embedded(runtime.embedded, stop, ended))
    if worker:
        match, dispatch = role in ("all", "match"), role in ("all", "dispatch")
        the_worker = Worker(runtime, contracts, targets, alerts, owner_alerts)
        holder.on_swap(lambda fresh: setattr(the_worker, "contracts", fresh))
        # What changed while no worker ran is applied now; later changes at each swap.
        applier = ChangeApplier(runtime.store, settings.contracts_retention)
        holder.after_swap(lambda fresh: apply_changes(applier, fresh))
        await apply_changes(applier, contracts)
        parts.append(the_worker.run(stop, match, dispatch))
    # Saved once the process is ready, not while (the same CPU); later at each swap.
    snapshots.saving(contracts.cache, contracts.version, after=SNAPSHOT_AFTER_S)
    siblings: list[subprocess.Popen[bytes]] = []
    if api:
        sock = _listening_socket(settings, shared=sibling or settings.api.workers > 1)
        if not sibling and settings.api.workers > 1:
            siblings = _start_api_siblings(settings, runtime.url, config_path)
        parts.append(_serve_api(runtime, holder, stop, sock))
    try:
        await asyncio.gather(*parts)
    finally:
        stop.set()
        _stop_siblings(siblings)
        await _close(runtime, [*targets.values(), alerts, *owner_alerts.values()])
        await asyncio.to_thread(snapshots.finish)
    if ended:
        raise ConfigError(ended[0])


async def _close(runtime: Runtime, senders: list[Any]) -> None:
    """Close the targets' and alert senders' connections, then Redis (and the
    embedded server)."""
    for sender in senders:
        if sender is not None:
            await sender.aclose()
    await runtime.close()


async def _watch_embedded(redis: RedisProcess, stop: asyncio.Event, ended: list[str]) -> None:
    """The embedded Redis is this process's own: when it ends (a signal sent to it, a
    crash), Baton stops too, rather than answer 503 for a Redis nobody will restart."""
    gone = asyncio.ensure_future(redis.ended())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait([gone, stopping], return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not gone.done():
        gone.cancel()
        return
    ended.append(f"the embedded Redis ended (exit code {gone.result()}); Baton stopped with it")
    log.error("%s", ended[0])
    stop.set()


def _listening_socket(settings: Settings, shared: bool) -> socket.socket:
    """The API's socket; with several API workers each binds its own with SO_REUSEPORT,
    and the kernel spreads new connections over them."""
    host = settings.api.host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server(
        (host, settings.api.port), family=family, backlog=2048, reuse_port=shared
    )


def _start_api_siblings(
    settings: Settings, redis_url: str, config_path: str | None
) -> list[subprocess.Popen[bytes]]:
    """`api.workers - 1` more API processes on the same port and the same Redis (the
    embedded one included: they are told its URL, so they do not start their own)."""
    command = [sys.executable, "-c", "from broker.cli.main import main; main()"]
    if config_path:
        command += ["--config", config_path]
    command += ["api", "--sibling"]
    env = os.environ | {"BATON_REDIS_URL": redis_url}
    siblings = [subprocess.Popen(command, env=env) for _ in range(settings.api.workers - 1)]
    log.info("%d more API worker(s) share the port", len(siblings))
    return siblings


def _stop_siblings(siblings: list[subprocess.Popen[bytes]]) -> None:
    for child in siblings:
        child.terminate()
    for child in siblings:
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()


async def _serve_api(
    runtime: Runtime, holder: ContractsHolder, stop: asyncio.Event, sock: socket.socket
) -> None:
    settings = runtime.settings
    app = create_app(runtime, holder.current)
    app.state.holder = holder
    holder.on_swap(lambda fresh: setattr(app.state, "contracts", fresh))
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        http=guarded_http(settings.api.head_timeout.total_seconds()),
        limit_concurrency=settings.api.max_connections,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    log.info("API on http://%s:%d", settings.api.host, settings.api.port)
    await stop.wait()
    server.should_exit = True
    await task
    app.state.redis_health.close()
