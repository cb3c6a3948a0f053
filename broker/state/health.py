"""Redis lost and found: one line when it goes, one when it is back, not one per call.

Every part that talks to Redis (the API's requests, the worker's loops) reports a
failure here; the first report logs it and starts a probe that pings Redis every
second and logs once when it answers again. `DOWN` lists the errors that mean Redis
cannot be reached or cannot take writes just now (as opposed to a bug in a command).
"""

from __future__ import annotations

import asyncio
import logging
import time

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

# BusyLoadingError (Redis still loading its data) is a ConnectionError.
DOWN: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError, ReadOnlyError)
PROBE_EVERY_S = 1.0


def reconnecting() -> Retry:
    """The retry for Baton's Redis clients: a pooled connection that died with a Redis
    restart is opened again and its command sent again, once and at once, so that only
    a Redis still away is reported as lost, and a request meanwhile is not held up by
    waits. (Clients made with `from_url` retry nothing by default.)"""
    return Retry(NoBackoff(), 1)


def is_down(exc: BaseException) -> bool:
    """Whether `exc` says Redis is unavailable (also MISCONF: it cannot persist)."""
    if isinstance(exc, DOWN):
        return True
    return isinstance(exc, ResponseError) and str(exc).startswith("MISCONF")


class RedisHealth:
    def __init__(self, redis: Redis, log: logging.Logger, what: str) -> None:
        self.redis = redis
        self.log = log
        self.what = what  # what callers get meanwhile, for the log line
        self.down_since: float | None = None
        self._probe: asyncio.Task[None] | None = None

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def lost(self, exc: BaseException) -> None:
        if self.down_since is not None:
            return
        self.down_since = time.monotonic()
        self.log.error("Redis is unreachable (%s: %s); %s until it is back",
                       type(exc).__name__, exc, self.what)  # fmt: skip
        self._probe = asyncio.get_running_loop().create_task(self._wait_for_redis())

    async def _wait_for_redis(self) -> None:
        while True:
            await asyncio.sleep(PROBE_EVERY_S)
            try:
                await self.redis.ping()
            except Exception as exc:  # still away (or failing): keep probing quietly
                if not is_down(exc):
                    self.log.debug("Redis probe failed", exc_info=True)
                continue
            assert self.down_since is not None
            self.log.warning("Redis is back after %.1f s", time.monotonic() - self.down_since)
            self.down_since = None
            return

    def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
