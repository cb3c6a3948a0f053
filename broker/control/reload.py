"""Live reload of the contracts folder: validate the whole new set, then swap it in.

`baton run`, `baton worker` and `baton api` watch the folder (watchfiles), and reload
on SIGHUP and on `POST /v1/contracts/reload`. A reload loads and checks every file; a
set with any error is refused as a whole and the last good set keeps running, the
error (`file:line: message`) logged and shown on `/readyz` and `GET /v1/contracts`.
An unchanged set (same version) is not swapped.

Nothing in the folder can stop the process: `reload()` never raises (whatever goes
wrong while loading, a bug included, refuses the new set, logged once), and `watch()`
never gives up: while the folder is away the error says so, and once a folder is there
again (the same, or another, as when a checkout swaps it) it is watched and reloaded.

Each process publishes the version it runs in Redis (`<ns>:contracts:loaded`, a hash
process -> {version, loaded_at}), so several workers can be seen converging; a process
that still runs another version than the newest one loaded anywhere says so in its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from redis.asyncio import Redis

from broker.control.audit import AuditTrail
from broker.core.errors import ConfigError
from broker.core.settings import Settings
from broker.matching.loaded import Contracts, load_checked
from broker.state.health import is_down
from broker.state.redis_store import RedisStore
from broker.state.util import text

log = logging.getLogger("baton.reload")


@dataclass(frozen=True, slots=True)
class ReloadResult:
    version: str
    changed: bool
    error: str | None = None


class Wiring(Protocol):
    """What a holder uses of the process's parts (`broker.runtime.Runtime` has them)."""

    settings: Settings
    redis: Redis
    store: RedisStore


# After a reload of the files the watcher named, the whole folder is reloaded once it has
# been quiet this many seconds, for what the watcher may not have named (a lost event, a
# queue overflowed). Seldom needed, and over 100,000 files a pass takes a second or two
# of the GIL: it waits for a pause in the edits instead of following each one.
QUIET_S = 3

# Each process says it is alive this often in `contracts:loaded`; one silent for a day
# was killed (a stopped one leaves the list itself) and is forgotten.
ALIVE_EVERY_S = 300
GONE_AFTER_S = 86_400


class ContractsHolder:
    """The contract set a process runs, and how it got there."""

    def __init__(self, runtime: Wiring, contracts: Contracts, name: str) -> None:
        self.runtime = runtime
        self.current = contracts
        self.name = name
        self.error: str | None = None
        self.loaded_at = datetime.now(UTC)
        self._listeners: list[Callable[[Contracts], None]] = []
        self._after: list[Callable[[Contracts], Awaitable[None]]] = []
        self._lock = asyncio.Lock()
        self._watch_error: str | None = None
        self.audit = AuditTrail(runtime.redis, runtime.store.keys)

    def on_swap(self, listener: Callable[[Contracts], None]) -> None:
        self._listeners.append(listener)

    def after_swap(self, hook: Callable[[Contracts], Awaitable[None]]) -> None:
        """`hook` runs after each swap, once the new set is live (it must not raise)."""
        self._after.append(hook)

    @property
    def _key(self) -> str:
        return self.runtime.store.keys.contracts_loaded

    async def publish(self) -> None:
        """Say which set this process runs, and that it is alive (`seen_at`)."""
        record = {"version": self.current.version, "loaded_at": self.loaded_at.isoformat(),
                  "seen_at": datetime.now(UTC).isoformat()}  # fmt: skip
        await self.runtime.redis.hset(self._key, self.name, json.dumps(record))

    async def sweep_gone(self) -> list[str]:
        """Forget the processes not seen for `GONE_AFTER_S` (killed, not stopped: a
        stopped one forgets itself); each live one says it is alive every few minutes."""
        cutoff = datetime.now(UTC).timestamp() - GONE_AFTER_S
        gone = [name for name, record in (await self.loaded_everywhere()).items()
                if _seen(record) < cutoff]  # fmt: skip
        if gone:
            await self.runtime.redis.hdel(self._key, *gone)
        return gone

    async def forget(self) -> None:
        """Leave the list of processes, at shutdown; a Redis already gone (Ctrl-C stops
        the embedded one with the rest of `make run`) has nothing to forget."""
        try:
            await self.runtime.redis.hdel(self._key, self.name)
        except Exception as exc:
            if not is_down(exc):
                raise

    async def loaded_everywhere(self) -> dict[str, dict[str, str]]:
        raw: Any = await self.runtime.redis.hgetall(self._key)
        return {text(k): json.loads(v) for k, v in raw.items()}

    async def reload(
        self, why: str, actor: str = "system", via: str = "watch", changed: set[str] | None = None
    ) -> ReloadResult:
        """Load and check the folder; swap the set in only if all of it is good. The
        audit trail records it when it changed or refused anything, and always when
        someone asked for it (an `actor` other than Baton itself). With the paths a
        watcher saw `changed`, only those are looked at."""
        result = await self._reload(why, changed)
        outcome = "refused" if result.error else "changed" if result.changed else "unchanged"
        if actor != "system" or outcome != "unchanged":
            await self.audit.record(actor, "contracts.reload", result.version, outcome,
                                    detail=result.error or why, via=via)  # fmt: skip
        return result

    async def _reload(self, why: str, changed: set[str] | None = None) -> ReloadResult:
        async with self._lock:
            try:
                run, began = self.current, time.perf_counter()
                fresh = await asyncio.to_thread(load_checked, self.runtime.settings,
                                                run.cache, run.matcher, changed)  # fmt: skip
                took = time.perf_counter() - began
            except Exception as exc:  # a bug, or MemoryError, too: the last good set runs on
                return self._refuse(why, exc)
            self.error = None
            if fresh.version == self.current.version:
                return ReloadResult(fresh.version, False)
            old, self.current, self.loaded_at = self.current.version, fresh, datetime.now(UTC)
            try:
                await self._announce(why, old, fresh, took)
            except Exception:  # the new set is live; only telling about it failed
                log.exception("contracts %s are live, but announcing them failed", fresh.version)
            return ReloadResult(fresh.version, True)

    def _refuse(self, why: str, exc: Exception) -> ReloadResult:
        expected = isinstance(exc, ConfigError)
        error = str(exc) if expected else f"contracts reload failed: {type(exc).__name__}: {exc}"
        if error != self.error:  # once, not at each retry while the folder stays as it is
            log.error("contracts reload (%s) refused; still running version %s:\n%s",
                      why, self.current.version, error, exc_info=not expected)  # fmt: skip
        self.error = error
        return ReloadResult(self.current.version, False, error)

    async def _announce(self, why: str, old: str, fresh: Contracts, took: float) -> None:
        for listener in self._listeners:
            listener(fresh)
        await self.publish()
        log.info("contracts reloaded (%s): version %s -> %s, %d contracts, loaded in %.2f s",
                 why, old, fresh.version, len(fresh.by_name()), took)  # fmt: skip
        for hook in self._after:
            await hook(fresh)

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
        await self.publish()
        lag_task = asyncio.create_task(self._lag_loop(stop))
        watched = _identity(self.runtime.settings.contracts)
        try:
            while not stop.is_set():
                watched = await self._watch_folder(stop, watched)
        finally:
            lag_task.cancel()
            await self.forget()

    async def _watch_folder(self, stop: asyncio.Event, known: _Identity | None) -> _Identity | None:
        """Watch the folder as long as it is the one it was when the watch began, and
        return that one (None: none was watched, so whatever comes next is reloaded)."""
        from watchfiles import awatch  # noqa: PLC0415 - only the long-running parts need it

        folder = self.runtime.settings.contracts
        now = _identity(folder)
        if now is None:  # away: the last reload's error says so
            await _pause(stop, 1)
            return None
        # A whole-folder reload owed (why), and the quiet seconds seen since it was.
        owed, quiet = (None, 0) if now == known else ("folder watched again", QUIET_S - 1)
        try:
            # A yield each second, changes or not: the first tells that the watch is on
            # (so a reload then misses nothing), each one is a chance to see the folder gone.
            async for changes in awatch(folder, stop_event=stop, debounce=200, step=50,
                                        rust_timeout=1000, yield_on_timeout=True,
                                        ignore_permission_denied=True):  # fmt: skip
                self._watch_error = None
                if changes:  # what the watcher named, at once
                    owed, quiet = _changed(changes), 0
                    await self.reload(owed, changed={path for _, path in changes})
                elif owed is not None and (quiet := quiet + 1) >= QUIET_S:
                    await self.reload(owed)
                    owed = None
                if _identity(folder) != now:
                    break
        except Exception as exc:  # watchfiles gave up on it: a moment, then again
            self._watch_failed(folder, exc)
            await _pause(stop, 1)
            return None
        return now

    def _watch_failed(self, folder: Path, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"
        if error != self._watch_error:  # once, not every second
            log.warning("watching %s stopped (%s); watching again", folder, error)
        self._watch_error = error

    async def _lag_loop(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        said = loop.time()
        while not stop.is_set():
            try:
                if loop.time() - said > ALIVE_EVERY_S:
                    said = loop.time()
                    await self.publish()
                    await self.sweep_gone()
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


def _seen(record: dict[str, str]) -> float:
    """When a process last said it was alive (a record from before `seen_at`: loaded)."""
    when = record.get("seen_at") or record.get("loaded_at") or ""
    try:
        return datetime.fromisoformat(when).timestamp()
    except ValueError:
        return 0.0


# A folder is the one watched while its device and inode stay; another in its place is not.
_Identity = tuple[int, int]


def _identity(folder: Path) -> _Identity | None:
    try:
        info = os.stat(folder)
    except OSError:
        return None
    return (info.st_dev, info.st_ino) if stat.S_ISDIR(info.st_mode) else None


def _changed(changes: set[tuple[Any, str]]) -> str:
    names = sorted({path.rsplit("/", 1)[-1] for _, path in changes})
    return f"changed: {', '.join(names[:5])}"


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
