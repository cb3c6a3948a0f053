"""Alert sinks: where Baton says that something needs a person.

A sink is a webhook (`alerts: [{kind: webhook, url, secret}]` in the config). The body is
Slack-compatible: `text` is the message a person reads, and `baton` carries the same
facts as data for a bot. Each alert has an id (the `Idempotency-Key` header), so a sink
that sees it twice (a worker died after sending and before recording) can drop the copy;
with a secret the request is signed like a webhook trigger.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from adapters._http import classify, translate_errors
from adapters.webhook import sign
from broker.core.settings import AlertSink

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger("baton.alerts")


class AlertSender:
    def __init__(self, sinks: Sequence[AlertSink], session: aiohttp.ClientSession) -> None:
        self.sinks = list(sinks)
        self.session = session

    async def aclose(self) -> None:
        await self.session.close()

    async def send(self, alert_id: str, text: str, facts: dict[str, Any]) -> None:
        """Post the alert to every sink; raises TargetUnavailable/TargetRejected when one
        fails, after trying them all (the caller keeps the alert to send again)."""
        body = json.dumps({"text": text, "baton": facts}, default=str).encode()
        failure: Exception | None = None
        for sink in self.sinks:
            try:
                await self._post(sink, alert_id, body)
            except Exception as exc:
                log.warning("alert %s to %s failed: %s", alert_id, sink.url, exc)
                failure = exc
        if failure is not None:
            raise failure

    async def _post(self, sink: AlertSink, alert_id: str, body: bytes) -> None:
        headers = {"Content-Type": "application/json", "Idempotency-Key": alert_id}
        if sink.secret is not None:
            stamp = str(int(time.time()))
            headers["X-Baton-Timestamp"] = stamp
            headers["X-Baton-Signature"] = sign(sink.secret.get_secret_value(), stamp, body)
        import aiohttp  # noqa: PLC0415  (imported by the session's maker already)

        label = f"alert sink {sink.url}"
        with translate_errors(label):
            async with self.session.post(
                sink.url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=10)
            ) as response:
                text = await response.text(errors="replace")
        classify(label, response.status, text)
