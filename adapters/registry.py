"""Build a Target for each configured target, by kind."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from adapters.alerts import AlertSender
from adapters.http1 import Http1
from adapters.webhook import WebhookTarget
from broker.core.errors import TargetRejected
from broker.core.settings import AirflowTarget as AirflowConfig
from broker.core.settings import DagsterTarget as DagsterConfig
from broker.core.settings import PrefectTarget as PrefectConfig
from broker.core.settings import Settings
from broker.core.settings import WebhookTarget as WebhookConfig
from broker.dispatch.target import Receipt, RunStatus, Target, TriggerRequest

if TYPE_CHECKING:
    import aiohttp


class NoAdapter:
    """A configured kind whose adapter this version lacks: every trigger is rejected,
    with a message that says so, rather than silently dropped."""

    def __init__(self, name: str, kind: str) -> None:
        self.name, self.kind = name, kind

    async def trigger(self, request: TriggerRequest) -> Receipt:
        raise TargetRejected(f"target {self.name}: no adapter for kind {self.kind!r} yet")

    async def status(self, ref: str) -> RunStatus:
        return RunStatus(state="failed", detail=f"no adapter for kind {self.kind!r}")

    async def check(self, spec: dict[str, Any]) -> list[str]:
        return [f"target {self.name}: no adapter for kind {self.kind!r} yet"]

    async def aclose(self) -> None:
        return None


def build_alerts(settings: Settings) -> AlertSender | None:
    """The configured alert sinks, or None; call inside the running event loop."""
    return AlertSender(settings.alerts, _session()) if settings.alerts else None


def build_owner_alerts(settings: Settings) -> dict[str, AlertSender]:
    """Each owner's own alert sinks, for the owners that have some; call inside the
    running event loop."""
    return {
        owner: AlertSender(config.alerts, _session())
        for owner, config in settings.owners.items()
        if config.alerts
    }


def _session() -> aiohttp.ClientSession:
    """An alert sink's HTTP session: aiohttp is imported only where alerts are sent
    (~170 ms of a start, for the alert sinks alone)."""
    import aiohttp  # noqa: PLC0415

    return aiohttp.ClientSession()


def build_targets(settings: Settings) -> dict[str, Target]:
    """One Target per configured target; call inside the running event loop."""
    http = Http1()  # the webhooks' connections, shared (opened only when used)
    targets: dict[str, Target] = {}
    for name, config in settings.targets.items():
        if isinstance(config, WebhookConfig):
            targets[name] = WebhookTarget(name, config, http)
        else:
            targets[name] = _orchestrator(name, config)
    return targets


def _orchestrator(name: str, config: Any) -> Target:
    """An orchestrator's adapter, imported only when a target of its kind is configured:
    Airflow's client alone takes over a second to import, in every process that starts."""
    if isinstance(config, AirflowConfig):
        from adapters.airflow import AirflowTarget  # noqa: PLC0415

        return AirflowTarget(name, config)
    if isinstance(config, DagsterConfig):
        from adapters.dagster import DagsterTarget  # noqa: PLC0415

        return DagsterTarget(name, config)
    if isinstance(config, PrefectConfig):
        from adapters.prefect import PrefectTarget  # noqa: PLC0415

        return PrefectTarget(name, config)
    return NoAdapter(name, config.kind)
