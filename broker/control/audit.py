"""The audit trail: who did what to Baton, and when, for every operator action.

Backfills started, dead letters retried, contracts reloaded (over HTTP, by SIGHUP, or
by the folder watcher), contracts paused and resumed, sign-ins: each is one entry in
the `<ns>:audit` stream (the newest `AUDIT_KEPT` kept) and one line in the log, so the
trail survives a Redis that lost it and a log that rotated. `GET /v1/audit` lists it.

The actor is a principal's name for HTTP, `cli:<user>@<host>` for a command that went
straight to Redis, and `system` for what Baton did by itself (a watched folder changed).
"""

from __future__ import annotations

import getpass
import logging
import socket
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from broker.state.keys import Keys
from broker.state.util import text

AUDIT_KEPT = 10_000
log = logging.getLogger("baton.audit")


def cli_actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (a bare container)
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


class AuditTrail:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def record(
        self,
        actor: str,
        action: str,
        subject: str,
        outcome: str,
        *,
        detail: str = "",
        via: str = "",
        remote: str = "",
    ) -> None:
        """Log the action and append it to the trail; a trail Redis cannot take now is
        still in the log (the action itself already happened)."""
        entry = {"at": datetime.now(UTC).isoformat(), "actor": actor, "action": action,
                 "subject": subject, "outcome": outcome, "detail": detail[:2000], "via": via,
                 "remote": remote}  # fmt: skip
        # The detail (a reload's error, say) is the action's own log line already.
        log.info("audit: %s %s %s -> %s", actor, action, subject or "-", outcome)
        try:
            await self.redis.xadd(self.keys.audit, entry, maxlen=AUDIT_KEPT, approximate=True)  # type: ignore[arg-type]
        except Exception:  # the action is done; its line in the log is the record
            log.warning("audit entry not written to Redis; it is in this log only", exc_info=True)

    async def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest entries first."""
        raw: Any = await self.redis.xrevrange(self.keys.audit, count=limit)
        return [
            {"id": text(entry_id), **{text(k): text(v) for k, v in fields.items()}}
            for entry_id, fields in raw
        ]
