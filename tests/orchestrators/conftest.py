"""Session fixtures: one real server per orchestrator, started on first use.

The servers come from cached venvs (`envs.py`); a session that needs none of them
starts none. Their logs are shown when a start fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import wait_until
from tests.orchestrators import servers
from tests.orchestrators.helpers import ask


@dataclass
class Prefect:
    server: servers.Server
    runner: servers.Proc

    @property
    def api(self) -> str:
        return self.server.extra["api"]

    def target(self, **overrides: object) -> dict[str, object]:
        return {"kind": "prefect", "url": self.api, "auth_string": servers.PREFECT_AUTH,
                "timeout": 5.0, **overrides}  # fmt: skip


@pytest.fixture(scope="session")
def prefect(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prefect]:
    server = servers.prefect(tmp_path_factory.mktemp("prefect")).start()
    runner = servers.prefect_runner(server)
    try:
        for name in ("report/daily", "report/backfill", "refresh/nightly"):
            servers.prefect_deployment_ready(server, name)
        yield Prefect(server, runner)
    finally:
        runner.stop()
        server.stop()


@dataclass
class Dagster:
    server: servers.Server

    @property
    def graphql(self) -> str:
        return f"{self.server.url}/graphql"

    def target(self, **overrides: object) -> dict[str, object]:
        return {"kind": "dagster", "url": self.graphql, "timeout": 10.0, **overrides}


@pytest.fixture(scope="session")
def dagster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dagster]:
    server = servers.dagster(tmp_path_factory.mktemp("dagster")).start()
    try:
        yield Dagster(server)
    finally:
        server.stop()


@dataclass
class Airflow:
    server: servers.Server

    @property
    def url(self) -> str:
        return self.server.url

    def target(self, **overrides: object) -> dict[str, object]:
        return {"kind": "airflow", "url": self.url, "username": servers.AIRFLOW_USER,
                "password": servers.AIRFLOW_PASSWORD, "timeout": 10.0, **overrides}  # fmt: skip

    def api(self, method: str, path: str, **kwargs: object) -> Any:
        login = {"username": servers.AIRFLOW_USER, "password": servers.AIRFLOW_PASSWORD}
        token = ask("POST", f"{self.url}/auth/token", json=login).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        return ask(method, f"{self.url}/api/v2/{path}", headers=headers, **kwargs).json()


@pytest.fixture(scope="session")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Airflow]:
    home = tmp_path_factory.mktemp("airflow")
    server = servers.airflow(home, jwt_seconds=servers.AIRFLOW_JWT_SECONDS).start()
    try:
        found = Airflow(server)
        # every DAG of the test folder parsed, not just some: a test may start on any
        dags = servers.HERE / "airflow_dags"
        expected = sum(f.read_text().count("\nwith DAG(") for f in dags.glob("*.py"))
        wait_until(lambda: found.api("GET", "dags")["total_entries"] >= expected,
                   timeout=90, every=1)  # fmt: skip
        yield found
    finally:
        server.stop()
