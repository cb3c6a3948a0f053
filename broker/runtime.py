"""What every entry point needs: Redis (embedded or configured), the store, the contracts.

A composition helper: it picks the concrete parts from the settings and nothing else
picks them. `Runtime.close()` releases what `Runtime.open()` started.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from redis.asyncio import Redis

from broker.auth import Authenticator
from broker.contracts.check import check_configured
from broker.contracts.loader import ContractSet
from broker.contracts.model import Contract
from broker.embedded_redis import RedisProcess, ensure_embedded
from broker.errors import ConfigError
from broker.matching.matcher import Matcher
from broker.settings import Settings
from broker.state.keys import Keys
from broker.state.redis_store import RedisStore

log = logging.getLogger("baton")


@dataclass
class Contracts:
    """The loaded contract set and the matcher built from it; swapped as a whole."""

    contract_set: ContractSet
    matcher: Matcher = field(init=False)

    def __post_init__(self) -> None:
        self.matcher = Matcher(c.contract for c in self.contract_set.contracts)

    @property
    def version(self) -> str:
        return self.contract_set.version

    def by_name(self) -> dict[str, Contract]:
        return self.matcher.contracts


def load_checked(settings: Settings) -> Contracts:
    """Load and check the contracts folder; any error refuses the whole set."""
    contract_set, errors = check_configured(settings)
    if errors:
        raise ConfigError("contracts rejected:\n" + "\n".join(str(e) for e in errors))
    return Contracts(contract_set)


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
        redis = Redis.from_url(
            url, decode_responses=False, socket_timeout=10, socket_connect_timeout=5
        )
        store = RedisStore(
            redis,
            Keys(settings.namespace),
            max_backlog=settings.max_backlog,
            dedup_ttl_s=int(settings.dedup_ttl.total_seconds()),
        )
        await store.ensure_groups()
        return cls(settings, url, redis, store, embedded)

    async def close(self) -> None:
        await self.redis.aclose()
        if self.embedded is not None:
            self.embedded.stop()
