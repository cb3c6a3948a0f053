"""Live reload of the contracts folder: validate the whole new set, then swap it in.

`baton run`, `baton worker` and `baton api` watch the folder (watchfiles), and reload
on SIGHUP and on `POST /v1/contracts/reload`. A reload loads and checks every file; a
set with any error is refused as a whole and the last good set keeps running, the
error (`file:line: message`) logged and shown on `/readyz` and `GET /v1/contracts`.
An unchanged set (same version) is not swapped.

Each process publishes the version it runs in Redis (`<ns>:contracts:loaded`, a hash
process -> {version, loaded_at}), so several workers can be seen converging; a process
that still runs another version than the newest one loaded anywhere says so in its log.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from broker.errors import ConfigError
from broker.runtime import Contracts, Runtime, load_checked
from broker.state.util import text

log = logging.getLogger("baton.reload")


@dataclass(frozen=True, slots=True)
class ReloadResult:
    version: str
    changed: bool
    error: str | None = None


class ContractsHolder:
    """The contract set a process runs, and how it got there."""

    def __init__(self, runtime: Runtime, contracts: Contracts, name: str) -> None:
        self.runtime = runtime
        self.current = contracts
        self.name = name
        self.error: str | None = None
        self.loaded_at = datetime.now(UTC)
        self._listeners: list[Callable[[Contracts], None]] = []
        self._after: list[Callable[[Contracts], Awaitable[None]]] = []
        self._lock = asyncio.Lock()

    def on_swap(self, listener: Callable[[Contracts], None]) -> None:
        self._listeners.append(listener)

    def after_swap(self, hook: Callable[[Contracts], Awaitable[None]]) -> None:
        """`hook` runs after each swap, once the new set is live (it must not raise)."""
        self._after.append(hook)

    @property
    def _key(self) -> str:
        return self.runtime.store.keys.contracts_loaded

    async def publish(self) -> None:
        record = {"version": self.current.version, "loaded_at": self.loaded_at.isoformat()}
        await self.runtime.redis.hset(self._key, self.name, json.dumps(record))

    async def forget(self) -> None:
        await self.runtime.redis.hdel(self._key, self.name)

    async def loaded_everywhere(self) -> dict[str, dict[str, str]]:
        raw: Any = await self.runtime.redis.hgetall(self._key)
        return {text(k): json.loads(v) for k, v in raw.items()}

    async def reload(self, why: str) -> ReloadResult:
        """Load and check the folder; swap the set in only if all of it is good."""
        async with self._lock:
            try:
                fresh = await asyncio.to_thread(load_checked, self.runtime.settings)
            except ConfigError as exc:
                self.error = str(exc)
                log.error("contracts reload (%s) refused; still running version %s:\n%s",
                          why, self.current.version, exc)  # fmt: skip
                return ReloadResult(self.current.version, False, self.error)
            self.error = None
            if fresh.version == self.current.version:
                return ReloadResult(fresh.version, False)
            old, self.current, self.loaded_at = self.current.version, fresh, datetime.now(UTC)
            for listener in self._listeners:
                listener(fresh)
            await self.publish()
            log.info("contracts reloaded (%s): version %s -> %s, %d contracts",
                     why, old, fresh.version, len(fresh.by_name()))  # fmt: skip
            for hook in self._after:
                await hook(fresh)
            return ReloadResult(fresh.version, True)

    async def check_lag(self) -> str | None:
        """The newest version any process loaded, when this one runs another."""
        everywhere = await self.loaded_everywhere()
        if not everywhere:
            return None
        newest = max(everywhere.values(), key=lambda r: r["loaded_at"])
        if newest["version"] != self.current.version:
            return str(newest["version"])
        return None

    async def watch(self, stop: asyncio.Event) -> None:
        """Reload when a file under the folder changes; warn while lagging behind."""
        from watchfiles import awatch  # noqa: PLC0415 - only the long-running parts need it

        await self.publish()
        folder = self.runtime.settings.contracts
        lag_task = asyncio.create_task(self._lag_loop(stop))
        try:
            while not stop.is_set():
                try:
                    async for changes in awatch(folder, stop_event=stop, debounce=200, step=50,
                                                ignore_permission_denied=True):  # fmt: skip
                        names = sorted({path.rsplit("/", 1)[-1] for _, path in changes})
                        await self.reload(f"changed: {', '.join(names[:5])}")
                except Exception as exc:  # the folder went away (a checkout swapped it)
                    log.warning("watching %s stopped (%s); watching again", folder, exc)
                    await asyncio.sleep(1)
                    await self.reload("folder watched again")
        finally:
            lag_task.cancel()
            await self.forget()

    async def _lag_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                newer = await self.check_lag()
                if newer is not None:
                    log.warning("this process runs contracts %s; %s was loaded elsewhere",
                                self.current.version, newer)  # fmt: skip
            except Exception:  # Redis away for a moment: look again next time
                log.debug("could not compare contract versions", exc_info=True)
            try:
                await asyncio.wait_for(stop.wait(), timeout=10)
            except TimeoutError:
                continue
