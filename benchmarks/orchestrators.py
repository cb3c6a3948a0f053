"""Event accepted -> run created, per orchestrator, against real servers.

    make bench-orchestrators        (python -m benchmarks.orchestrators [RUNS])

Starts Airflow 3, Dagster and Prefect from the test suite's cached venvs and one
`baton run`, then publishes events one at a time over HTTP. Each event fires a
static-partitioned contract, so each makes a new run; the figure is the
orchestrator's own creation time of that run (Airflow `queued_at`, Dagster
`creationTime`, Prefect `created`) minus the moment just before the event was POSTed.
The events are spaced out, so this is the latency of one event, not of a queue.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import redis

from benchmarks import procs
from benchmarks.report import Row, print_table
from broker.embedded_redis import free_port
from tests.orchestrators import servers

CONTRACTS = {
    "airflow.yaml": """
name: lat_airflow
partitioned: static
when: bench.airflow
trigger: {target: airflow, dag_id: report_daily, conf: {key: "{{ partition }}"}}
""",
    "dagster.yaml": """
name: lat_dagster
partitioned: static
when: bench.dagster
trigger:
  target: dagster
  job: report_job
  location: dagster_defs.py
  run_config: {ops: {build_report: {config: {run_date: "{{ partition }}"}}}}
""",
    "prefect.yaml": """
name: lat_prefect
partitioned: static
when: bench.prefect
trigger: {target: prefect, deployment: report/daily, parameters: {run_date: "{{ partition }}"}}
""",
}

# What each orchestrator's own event path takes (measured here; see FACTS.md).
BARS = {
    "prefect": "median <= 34 ms (Prefect automations: 31-58 ms)",
    "airflow": "Airflow asset scheduling: 0.6-1.1 s",
    "dagster": "Dagster sensors: 30 s ticks",
}


def main(runs: int) -> None:
    with procs.fresh_redis("baton-orch-bench-") as (url, tmp):
        started = _start_servers(tmp)
        try:
            rows = _measure_all(tmp, url, started, runs)
        finally:
            for orchestrator in started.values():
                orchestrator.stop()
    print_table(rows)


def _start_servers(tmp: Path) -> dict[str, Any]:
    prefect = servers.prefect(tmp / "prefect").start()
    runner = servers.prefect_runner(prefect)
    servers.prefect_deployment_ready(prefect, "report/daily")
    dagster = servers.dagster(tmp / "dagster").start()
    airflow = servers.airflow(tmp / "airflow").start()
    return {"prefect": prefect, "runner": _Stoppable(runner), "dagster": dagster,
            "airflow": airflow}  # fmt: skip


class _Stoppable:
    def __init__(self, proc: servers.Proc) -> None:
        self.proc = proc

    def stop(self) -> None:
        self.proc.stop()


def _measure_all(tmp: Path, redis_url: str, started: dict[str, Any], runs: int) -> list[Row]:
    airflow, dagster, prefect = started["airflow"], started["dagster"], started["prefect"]
    targets = {
        "airflow": {"kind": "airflow", "url": airflow.url, "username": servers.AIRFLOW_USER,
                    "password": servers.AIRFLOW_PASSWORD},
        "dagster": {"kind": "dagster", "url": f"{dagster.url}/graphql"},
        "prefect": {"kind": "prefect", "url": prefect.extra["api"],
                    "auth_string": servers.PREFECT_AUTH},
    }  # fmt: skip
    port = free_port()
    config = procs.write_config(tmp, redis_url, port, CONTRACTS, targets=targets)
    baton = procs.start(config, "run")
    try:
        api = f"http://127.0.0.1:{port}"
        procs.wait_http(api + "/healthz")
        _wait_airflow_dags(airflow)
        finders = {
            "airflow": _airflow_created(airflow),
            "dagster": _dagster_created(dagster),
            "prefect": _prefect_created(prefect),
        }
        direct = {
            "airflow": _airflow_direct(airflow),
            "dagster": _dagster_direct(dagster),
            "prefect": _prefect_direct(prefect),
        }
        rows = []
        store = redis.Redis.from_url(redis_url)
        for kind, created in finders.items():
            raw = _q(_direct_delays(direct[kind], created, runs))
            delays, claims = _delays(api, kind, created, runs, store)
            ours, claim = _q(delays), _q(claims)
            rows += [
                Row(f"{kind}: raw API call -> run created, median", raw[49] * 1000, "ms"),
                Row(f"{kind}: raw API call -> run created, p99", raw[98] * 1000, "ms"),
                Row(f"{kind}: Baton event -> run created, median", ours[49] * 1000, "ms",
                    ratio=ours[49] / raw[49], target=BARS[kind]),
                Row(f"{kind}: Baton event -> run created, p99", ours[98] * 1000, "ms",
                    ratio=ours[98] / raw[98]),
                Row(f"{kind}:   of which event -> trigger claimed, p50", claim[49] * 1000, "ms"),
                Row(f"{kind}:   of which event -> trigger claimed, p99", claim[98] * 1000, "ms"),
            ]  # fmt: skip
        store.close()
        return rows
    finally:
        procs.stop(baton)


def _q(values: list[float]) -> list[float]:
    return statistics.quantiles(values, n=100)


def _wait_created(created: Callable[[str], float | None], ref: str) -> float:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        when = created(ref)
        if when is not None:
            return when
        time.sleep(0.05)
    raise RuntimeError(f"no run for {ref} within 30 s")


def _post_until_taken(url: str, **kwargs: Any) -> None:
    """POST, again at once on a 5xx (SQLite-backed servers answer 503 when locked)."""
    for _ in range(100):
        answer = httpx.post(url, timeout=30, **kwargs)
        if answer.status_code < 500:
            answer.raise_for_status()
            return
        time.sleep(0.05)
    answer.raise_for_status()


def _direct_delays(
    create: Callable[[str], None], created: Callable[[str], float | None], runs: int
) -> list[float]:
    """The same runs made by calling the orchestrator's API straight, no Baton."""
    delays = []
    for i in range(runs + 1):
        ref = f"raw:k{time.time_ns()}"
        sent = time.time()
        create(ref)
        when = _wait_created(created, ref)
        if i:
            delays.append(when - sent)
        time.sleep(0.3)
    return delays


def _delays(
    api: str, kind: str, created: Callable[[str], float | None], runs: int, store: redis.Redis
) -> tuple[list[float], list[float]]:
    """Event -> run created; event -> trigger claimed (the record's created_at)."""
    delays: list[float] = []
    claims: list[float] = []
    with httpx.Client(timeout=10) as client:
        for i in range(runs + 1):  # the first warms connections and caches up
            key = f"k{time.time_ns()}"
            sent = time.time()
            answer = client.post(f"{api}/v1/events", json={"dataset": f"bench.{kind}",
                                                            "partition": key})  # fmt: skip
            answer.raise_for_status()
            when = _wait_created(created, f"baton:lat_{kind}:{key}:0")
            if i:
                delays.append(when - sent)
                claimed = store.hget(f"baton:t:baton:lat_{kind}:{key}:0", "created_at")
                claims.append(_iso(claimed.decode()) - sent if claimed else float("nan"))
            time.sleep(0.3)
    return delays, claims


def _iso(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _airflow_token(airflow: Any) -> dict[str, str]:
    token = httpx.post(f"{airflow.url}/auth/token", timeout=10, json={
        "username": servers.AIRFLOW_USER, "password": servers.AIRFLOW_PASSWORD,
    }).json()["access_token"]  # fmt: skip
    return {"Authorization": f"Bearer {token}"}


def _wait_airflow_dags(airflow: Any) -> None:
    headers = _airflow_token(airflow)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        dags = httpx.get(f"{airflow.url}/api/v2/dags", headers=headers, timeout=10).json()
        if any(d["dag_id"] == "report_daily" for d in dags.get("dags", [])):
            return
        time.sleep(1)
    raise RuntimeError("Airflow did not parse report_daily")


def _airflow_created(airflow: Any) -> Callable[[str], float | None]:
    headers = _airflow_token(airflow)

    def created(run_id: str) -> float | None:
        got = httpx.get(f"{airflow.url}/api/v2/dags/report_daily/dagRuns/{run_id}",
                        headers=headers, timeout=10)  # fmt: skip
        return _iso(got.json()["queued_at"]) if got.status_code == 200 else None

    return created


def _airflow_direct(airflow: Any) -> Callable[[str], None]:
    headers = _airflow_token(airflow)

    def create(run_id: str) -> None:
        body = {"dag_run_id": run_id, "logical_date": None}
        url = f"{airflow.url}/api/v2/dags/report_daily/dagRuns"
        _post_until_taken(url, headers=headers, json=body)

    return create


def _dagster_direct(dagster: Any) -> Callable[[str], None]:
    mutation = """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
      __typename } }"""

    def create(tag: str) -> None:
        params = {
            "selector": {"repositoryLocationName": "dagster_defs.py",
                         "repositoryName": "__repository__", "jobName": "report_job"},
            "runConfigData": {"ops": {"build_report": {"config": {"run_date": tag}}}},
            "executionMetadata": {"tags": [{"key": "baton/trigger_id", "value": tag}]},
        }  # fmt: skip
        body = {"query": mutation, "variables": {"p": params}}
        _post_until_taken(f"{dagster.url}/graphql", json=body)

    return create


def _prefect_direct(prefect: Any) -> Callable[[str], None]:
    api, auth = prefect.extra["api"], tuple(servers.PREFECT_AUTH.split(":", 1))
    deployment = httpx.get(f"{api}/deployments/name/report/daily", auth=auth).json()["id"]

    def create(key: str) -> None:
        body = {"parameters": {"run_date": key}, "idempotency_key": key, "tags": ["baton"]}
        _post_until_taken(f"{api}/deployments/{deployment}/create_flow_run", auth=auth, json=body)

    return create


def _dagster_created(dagster: Any) -> Callable[[str], float | None]:
    query = """query($tags: [ExecutionTag!]) {
      runsOrError(filter: {tags: $tags}) { ... on Runs { results { creationTime } } } }"""

    def created(trigger_id: str) -> float | None:
        tags = [{"key": "baton/trigger_id", "value": trigger_id}]
        got = httpx.post(f"{dagster.url}/graphql", timeout=10,
                         json={"query": query, "variables": {"tags": tags}})  # fmt: skip
        results = got.json()["data"]["runsOrError"]["results"]
        return float(results[0]["creationTime"]) if results else None

    return created


def _prefect_created(prefect: Any) -> Callable[[str], float | None]:
    auth = tuple(servers.PREFECT_AUTH.split(":", 1))

    def created(key: str) -> float | None:
        got = httpx.post(f"{prefect.extra['api']}/flow_runs/filter", auth=auth, timeout=10,
                         json={"sort": "EXPECTED_START_TIME_DESC", "limit": 20})  # fmt: skip
        ours = [r for r in got.json() if r.get("idempotency_key") == key]
        return _iso(ours[0]["created"]) if ours else None

    return created


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 25)
