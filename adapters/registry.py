"""Build a Target for each configured target, by kind."""

from __future__ import annotations

import httpx

from adapters.webhook import WebhookTarget
from broker.dispatch.target import Receipt, Target, TriggerRequest
from broker.errors import TargetRejected
from broker.settings import Settings
from broker.settings import WebhookTarget as WebhookConfig


class NoAdapter:
    """A configured kind whose adapter this version lacks: every trigger is rejected,
    with a message that says so, rather than silently dropped."""

    def __init__(self, name: str, kind: str) -> None:
        self.name, self.kind = name, kind

    async def trigger(self, request: TriggerRequest) -> Receipt:
        raise TargetRejected(f"target {self.name}: no adapter for kind {self.kind!r} yet")

    async def aclose(self) -> None:
        return None


def build_targets(settings: Settings) -> dict[str, Target]:
    client = httpx.AsyncClient(follow_redirects=False)
    targets: dict[str, Target] = {}
    for name, config in settings.targets.items():
        if isinstance(config, WebhookConfig):
            targets[name] = WebhookTarget(name, config, client)
        else:
            targets[name] = NoAdapter(name, config.kind)
    return targets
