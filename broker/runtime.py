"""What every entry point needs: Redis (embedded or configured), the store, the contracts.

A composition helper: it picks the concrete parts from the settings and nothing else
picks them. `Runtime.close()` releases what `Runtime.open()` started.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from redis.asyncio import Redis

from broker.core.settings import Settings
from broker.embedded_redis import RedisProcess, ensure_embedded
from broker.ingest.auth import Authenticator
from broker.state.health import reconnecting
from broker.state.keys import Keys
from broker.state.packing import packed_by_hiredis
from broker.state.redis_store import RedisStore

log = logging.getLogger("baton")


def redis_url(settings: Settings) -> tuple[str, RedisProcess | None]:
    """The configured URL, or the embedded Redis under the data folder."""
    if settings.redis_url:
        return settings.redis_url, None
    url, process = ensure_embedded(settings.data_dir / "redis")
    if process is not None:
        log.info("started the embedded Redis (data in %s)", process.data_dir)
    return url, process


@dataclass
class Runtime:
    settings: Settings
    url: str
    redis: Redis
    store: RedisStore
    embedded: RedisProcess | None = None
    # This process's environment, for the `${VAR}` contracts may read (contract_env).
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    # Producers and principals; with `auth: off`, or none configured, nobody is asked.
    auth: Authenticator = field(init=False)

    def __post_init__(self) -> None:
        on = self.settings.auth == "on"
        window = int(self.settings.api.signature_window.total_seconds())
        self.auth = Authenticator(
            self.settings.producers if on else [],
            window,
            self.settings.principals if on else [],
        )

    @classmethod
    async def open(cls, settings: Settings) -> Runtime:
        url, embedded = redis_url(settings)
        # Timeouts, so a Redis that hangs (not just one that refuses) is noticed too.
        redis = Redis.from_url(url, decode_responses=False, socket_timeout=10,
                               socket_connect_timeout=5, retry=reconnecting())  # fmt: skip
        packed_by_hiredis(redis)
        store = RedisStore(
            redis,
            Keys(settings.namespace),
            max_backlog=settings.max_backlog,
            dedup_ttl_s=int(settings.dedup_ttl.total_seconds()),
            history_s=int(settings.history_retention.total_seconds()),
            markers_s=int(settings.markers_retention.total_seconds()),
        )
        await store.ensure_groups()
        return cls(settings, url, redis, store, embedded)

    async def close(self) -> None:
        await self.redis.aclose()
        if self.embedded is not None:
            self.embedded.stop()
