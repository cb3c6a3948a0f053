"""The `prefect` target: create a flow run of a deployment over Prefect's REST API.

    GET  /deployments/name/{flow}/{deployment}      -> the deployment (id cached)
    POST /deployments/{id}/create_flow_run          {parameters, tags, idempotency_key}

The trigger id is the `idempotency_key`: a repeat answers 200 with the run the first
call made, so a retried dispatch never starts a second run. Prefect keeps keys per
*flow*, not per deployment, and returns the original run even if the parameters or the
deployment differ; so a returned run of another deployment is a conflict, reported
with that run's id, never taken as ours.

Auth: `auth_string` (`user:password`, a self-hosted server's
PREFECT_SERVER_API_AUTH_STRING) as HTTP Basic, or `api_key` (Prefect Cloud) as Bearer.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from adapters._http import raise_for_status, translate_errors
from broker.core.errors import TargetRejected
from broker.core.settings import PrefectTarget as PrefectConfig
from broker.dispatch.target import Receipt, RunStatus, TriggerRequest

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)

# Prefect state types -> Baton's run states.
_STATES = {
    "COMPLETED": "succeeded",
    "FAILED": "failed",
    "CRASHED": "failed",
    "CANCELLED": "failed",
    "CANCELLING": "running",
    "SCHEDULED": "queued",
    "PENDING": "queued",
    "PAUSED": "running",
    "RUNNING": "running",
}


def client_for(config: PrefectConfig) -> httpx.AsyncClient:
    auth: httpx.Auth | None = None
    headers = {}
    if config.auth_string is not None:
        user, _, password = config.auth_string.get_secret_value().partition(":")
        auth = httpx.BasicAuth(user, password)
    if config.api_key is not None:
        headers["Authorization"] = f"Bearer {config.api_key.get_secret_value()}"
    return httpx.AsyncClient(
        base_url=config.url.rstrip("/") + "/", auth=auth, headers=headers, timeout=config.timeout
    )


class PrefectTarget:
    def __init__(
        self, name: str, config: PrefectConfig, client: httpx.AsyncClient | None = None
    ) -> None:
        self.name = name
        self.config = config
        self.client = client or client_for(config)
        self.label = f"prefect {name}"
        self._deployments: dict[str, dict[str, Any]] = {}

    @property
    def ui(self) -> str:
        base = self.config.url.rstrip("/")
        return base[: -len("/api")] if base.endswith("/api") else base

    async def deployment(self, ref: str) -> dict[str, Any]:
        """The deployment named `flow/deployment` (or by id), cached after the first look."""
        if ref in self._deployments:
            return self._deployments[ref]
        if _UUID.match(ref):
            path = f"deployments/{ref}"
        elif ref.count("/") == 1:
            path = f"deployments/name/{ref}"
        else:
            raise TargetRejected(
                f"{self.label}: deployment {ref!r} is neither 'flow-name/deployment-name' nor an id"
            )
        with translate_errors(self.label):
            response = await self.client.get(path)
        if response.status_code == 404:
            raise TargetRejected(f"{self.label}: deployment {ref!r} not found")
        raise_for_status(self.label, response)
        found: dict[str, Any] = response.json()
        self._deployments[ref] = found
        return found

    def reads_inputs(self, fields: dict[str, Any]) -> bool:
        """A run is started from the rendered trigger alone, never its inputs."""
        return False

    async def trigger(self, request: TriggerRequest) -> Receipt:
        spec = request.spec
        deployment = await self.deployment(str(spec["deployment"]))
        parameters = dict(spec.get("parameters") or {})
        unknown = unknown_parameters(deployment, parameters)
        if unknown:
            raise TargetRejected(
                f"{self.label}: deployment {spec['deployment']!r} takes no parameter "
                f"{', '.join(map(repr, unknown))} (its flow would crash on it)"
            )
        body = {
            "parameters": parameters,
            "tags": [*spec.get("tags", []), "baton"],
            "idempotency_key": request.trigger_id,
        }
        with translate_errors(self.label):
            response = await self.client.post(
                f"deployments/{deployment['id']}/create_flow_run", json=body
            )
        raise_for_status(self.label, response)
        run = response.json()
        if run.get("deployment_id") != deployment["id"]:
            raise TargetRejected(
                f"{self.label}: idempotency key {request.trigger_id!r} already belongs to "
                f"flow run {run.get('id')} of another deployment ({run.get('deployment_id')})"
            )
        return Receipt(ref=run["id"], url=f"{self.ui}/runs/flow-run/{run['id']}")

    async def status(self, ref: str) -> RunStatus:
        with translate_errors(self.label):
            response = await self.client.get(f"flow_runs/{ref}")
        raise_for_status(self.label, response)
        state = response.json().get("state") or {}
        kind = str(state.get("type", "PENDING"))
        return RunStatus(state=_STATES.get(kind, "running"), detail=state.get("name") or kind)

    async def check(self, spec: dict[str, Any]) -> list[str]:
        """What `baton check --online` asks: the deployment exists, parameters fit."""
        try:
            deployment = await self.deployment(str(spec["deployment"]))
        except TargetRejected as exc:
            return [str(exc)]
        problems = [
            f"{self.label}: deployment {spec['deployment']!r} takes no parameter {name!r}"
            for name in unknown_parameters(deployment, spec.get("parameters") or {})
        ]
        schema = deployment.get("parameter_openapi_schema") or {}
        for name in schema.get("required", []):
            if name not in (spec.get("parameters") or {}) and name not in (
                deployment.get("parameters") or {}
            ):
                problems.append(
                    f"{self.label}: deployment {spec['deployment']!r} needs parameter {name!r}"
                )
        return problems

    async def aclose(self) -> None:
        await self.client.aclose()


def unknown_parameters(deployment: dict[str, Any], parameters: dict[str, Any]) -> list[str]:
    """Parameters the deployment's flow does not declare (none if it takes **kwargs)."""
    schema = deployment.get("parameter_openapi_schema") or {}
    declared = schema.get("properties")
    if declared is None or schema.get("additionalProperties"):
        return []
    return sorted(set(parameters) - set(declared))
