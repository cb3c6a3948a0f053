"""What the orchestrator tests ask Baton: trigger records, and riding out an outage."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from broker.core.errors import TargetUnavailable
from broker.dispatch.target import Receipt, RunStatus, Target, TriggerRequest
from tests.conftest import Cluster, wait_until
from tests.orchestrators.servers import Server

T = TypeVar("T")


def trigger_record(cluster: Cluster, trigger_id: str) -> dict[str, Any] | None:
    rows = json.loads(cluster.cli("triggers", "--json").stdout)
    return next((r for r in rows if r["id"] == trigger_id), None)


def wait_succeeded(cluster: Cluster, contract: str, timeout: float = 30) -> dict[str, Any]:
    """The contract's first succeeded trigger; fails at once if one failed, quoting it."""

    def succeeded() -> dict[str, Any] | None:
        rows = json.loads(cluster.cli("triggers", "--json").stdout)
        ours = [t for t in rows if t["contract"] == contract]
        failed = [t["last_error"] for t in ours if t["state"] == "failed"]
        assert not failed, failed
        done = [t for t in ours if t["state"] == "succeeded"]
        return done[0] if done else None

    found: dict[str, Any] = wait_until(succeeded, timeout=timeout)
    return found


def publish_through_an_outage(
    cluster: Cluster, server: Server, dataset: str, partition: str, trigger_id: str
) -> dict[str, Any]:
    """Stop the orchestrator, publish, see Baton retry, start it again; the record."""
    server.stop()
    try:
        cluster.cli("publish", dataset, "--partition", partition)
        wait_until(lambda: (r := trigger_record(cluster, trigger_id)) and r["attempts"] >= 2)
    finally:
        server.start()
    done: dict[str, Any] = wait_until(
        lambda: (r := trigger_record(cluster, trigger_id)) and r["state"] == "succeeded" and r,
        timeout=90,
    )
    return done


def ask(method: str, url: str, **kwargs: Any) -> httpx.Response:
    """The tests' own look into an orchestrator. Dagster's and Prefect's servers run on
    SQLite and, under load, answer slowly (30 s allowed) or with a 5xx now and then
    ("database is locked"); that is not what a test checks, so a look is taken again, a few times,
    before it counts as an answer."""
    for _ in range(10):
        response = httpx.request(method, url, timeout=30, **kwargs)
        if response.status_code < 500:
            break
        time.sleep(0.5)
    response.raise_for_status()
    return response


class Patient:
    """An adapter whose transient failures are tried again, as Baton's dispatcher does.

    For tests that call an adapter straight against a real (loaded, maybe SQLite-backed)
    orchestrator: a 503 "retry later" from it is the adapter working, not the thing
    under test. Permanent rejections pass through at once."""

    def __init__(self, target: Target, attempts: int = 10, pause: float = 0.5) -> None:
        self.target, self.attempts, self.pause = target, attempts, pause

    async def _again(self, call: Callable[[], Awaitable[T]]) -> T:
        for _ in range(self.attempts - 1):
            try:
                return await call()
            except TargetUnavailable:
                await asyncio.sleep(self.pause)
        return await call()

    async def trigger(self, request: TriggerRequest) -> Receipt:
        return await self._again(lambda: self.target.trigger(request))

    async def status(self, ref: str) -> RunStatus:
        return await self._again(lambda: self.target.status(ref))

    async def check(self, spec: dict[str, Any]) -> list[str]:
        return await self._again(lambda: self.target.check(spec))

    async def aclose(self) -> None:
        await self.target.aclose()
