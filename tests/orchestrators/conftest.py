"""Session fixtures: one real server per orchestrator, started on first use.

The servers come from cached venvs (`envs.py`); a session that needs none of them
starts none. Their logs are shown when a start fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.orchestrators import servers


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
