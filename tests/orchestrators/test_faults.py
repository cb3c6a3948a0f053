"""Faults between Baton and real orchestrators: a 503, a reset, a hang, a worker killed
mid-call, the orchestrator stopped during dispatch. Each ends in exactly one run."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from adapters.airflow import AirflowTarget
from adapters.dagster import DagsterTarget
from adapters.prefect import PrefectTarget
from broker.core.errors import TargetUnavailable
from broker.core.settings import AirflowTarget as AirflowConfig
from broker.core.settings import DagsterTarget as DagsterConfig
from broker.core.settings import PrefectTarget as PrefectConfig
from broker.dispatch.target import Target, TriggerRequest
from tests.conftest import Cluster, wait_until
from tests.orchestrators.conftest import Airflow, Dagster, Prefect
from tests.orchestrators.faults import FaultProxy, fault_proxy
from tests.orchestrators.helpers import Patient, publish_through_an_outage, trigger_record
from tests.orchestrators.test_airflow import unique_day
from tests.orchestrators.test_dagster import runs_tagged
from tests.orchestrators.test_prefect import runs_with_key

pytestmark = [pytest.mark.orchestrators]


def one_request(spec: dict[str, Any]) -> TriggerRequest:
    """A trigger on a day no other test uses (Airflow: one run per logical date)."""
    day = unique_day()
    start = datetime.fromisoformat(f"{day}T00:00:00+00:00")
    context = {
        "partition_start": start.isoformat(),
        "partition_end": (start + timedelta(days=1)).isoformat(),
    }
    return TriggerRequest(f"baton:fault_{uuid.uuid4().hex[:8]}:{day}:0", "fault", day, 0, spec,
                          context)  # fmt: skip


TargetFactory = Callable[[FaultProxy], Target]


def _prefect_target(prefect: Prefect) -> TargetFactory:
    return lambda proxy: PrefectTarget(
        "prefect", PrefectConfig.model_validate(prefect.target(url=proxy.url + "/api", timeout=1.0))
    )


def _dagster_target(dagster: Dagster) -> TargetFactory:
    return lambda proxy: DagsterTarget("dagster", DagsterConfig.model_validate(
        dagster.target(url=proxy.url + "/graphql", timeout=1.0)))  # fmt: skip


def _airflow_target(airflow: Airflow) -> TargetFactory:
    return lambda proxy: AirflowTarget(
        "airflow", AirflowConfig.model_validate(airflow.target(url=proxy.url, timeout=1.0))
    )


@pytest.mark.prefect
@pytest.mark.parametrize("mode", ["503", "reset", "hang"])
async def test_prefect_faults_are_transient(prefect: Prefect, mode: str) -> None:
    await _faults_are_transient(
        prefect.server.port,
        _prefect_target(prefect),
        mode,
        {"deployment": "report/daily", "parameters": {"run_date": "x"}},
    )


@pytest.mark.dagster
@pytest.mark.parametrize("mode", ["503", "reset", "hang"])
async def test_dagster_faults_are_transient(dagster: Dagster, mode: str) -> None:
    spec = {"job": "report_job", "location": "dagster_defs.py",
            "run_config": {"ops": {"build_report": {"config": {"run_date": "x"}}}}}  # fmt: skip
    await _faults_are_transient(dagster.server.port, _dagster_target(dagster), mode, spec)


@pytest.mark.airflow
@pytest.mark.parametrize("mode", ["503", "reset", "hang"])
async def test_airflow_faults_are_transient(airflow: Airflow, mode: str) -> None:
    await _faults_are_transient(
        airflow.server.port, _airflow_target(airflow), mode, {"dag_id": "report_daily"}
    )


async def _faults_are_transient(
    port: int, make: TargetFactory, mode: str, spec: dict[str, Any]
) -> None:
    with fault_proxy(port) as proxy:
        proxy.mode = mode
        target = make(proxy)
        try:
            with pytest.raises(TargetUnavailable):
                await target.trigger(one_request(spec))
            proxy.mode = "pass"  # the same request goes through once the wire is whole
            receipt = await Patient(target).trigger(one_request(spec))
        finally:
            await target.aclose()
    assert receipt.ref


PREFECT_CONTRACT = """
name: {name}
partitioned: daily
when: {dataset}
trigger:
  target: prefect
  deployment: report/daily
  parameters: {{run_date: "{{{{ partition }}}}"}}
"""


def _prefect_cluster(
    cluster: Cluster, prefect: Prefect, url: str, timeout: float = 5.0, **extra: Any
) -> tuple[str, str]:
    name, dataset = f"fault_{uuid.uuid4().hex[:6]}", f"feeds.f_{uuid.uuid4().hex[:6]}"
    cluster.write_contracts({"c.yaml": PREFECT_CONTRACT.format(name=name, dataset=dataset)})
    cluster.write_config(
        "http://127.0.0.1:9",
        targets={"prefect": prefect.target(url=url, timeout=timeout)},
        **extra,
    )
    return name, dataset


@pytest.mark.prefect
def test_503s_are_retried_until_prefect_answers_and_make_one_run(
    cluster: Cluster, prefect: Prefect
) -> None:
    with fault_proxy(prefect.server.port) as proxy:
        proxy.mode = "503"
        name, dataset = _prefect_cluster(
            cluster,
            prefect,
            proxy.url + "/api",
            retry={"initial": "0.3s", "max_delay": "1s", "max_attempts": 50},
        )
        cluster.run()
        cluster.cli("publish", dataset, "--partition", "2026-11-23")
        trigger_id = f"baton:{name}:2026-11-23:0"
        retrying = wait_until(
            lambda: (r := trigger_record(cluster, trigger_id)) and r["attempts"] >= 2 and r
        )
        assert retrying["state"] in ("retrying", "pending", "dispatching")
        assert "HTTP 503" in retrying["last_error"]
        proxy.mode = "pass"
        wait_until(lambda: trigger_record(cluster, trigger_id)["state"] == "succeeded")  # type: ignore[index]
    assert len(runs_with_key(prefect, trigger_id)) == 1


@pytest.mark.prefect
def test_a_worker_killed_after_prefect_took_the_call_makes_one_run(
    cluster: Cluster, prefect: Prefect
) -> None:
    with fault_proxy(prefect.server.port) as proxy:
        proxy.mode = "withhold"  # Prefect creates the run; Baton never hears back
        proxy.withhold_match = b"create_flow_run"
        name, dataset = _prefect_cluster(cluster, prefect, proxy.url + "/api", timeout=30.0)
        baton = cluster.run()
        cluster.cli("publish", dataset, "--partition", "2026-11-23")
        trigger_id = f"baton:{name}:2026-11-23:0"
        wait_until(lambda: runs_with_key(prefect, trigger_id))
        baton.kill9()  # mid-call: the run exists, the trigger record says dispatching
        assert trigger_record(cluster, trigger_id)["state"] == "dispatching"  # type: ignore[index]
        proxy.mode = "pass"
        cluster.run()  # takes the pending entry over after claim_idle and calls again
        wait_until(lambda: trigger_record(cluster, trigger_id)["state"] == "succeeded")  # type: ignore[index]
    runs = runs_with_key(prefect, trigger_id)
    assert len(runs) == 1
    assert trigger_record(cluster, trigger_id)["downstream_ref"] == runs[0]["id"]  # type: ignore[index]


@pytest.mark.prefect
def test_prefect_stopped_during_dispatch_then_started_again_makes_one_run(
    cluster: Cluster, prefect: Prefect
) -> None:
    name, dataset = _prefect_cluster(cluster, prefect, prefect.api, retry=PATIENT)
    cluster.run()
    trigger_id = f"baton:{name}:2026-11-23:0"
    publish_through_an_outage(cluster, prefect.server, dataset, "2026-11-23", trigger_id)
    assert len(runs_with_key(prefect, trigger_id)) == 1


@pytest.mark.airflow
def test_a_worker_killed_after_airflow_took_the_call_makes_one_run(
    cluster: Cluster, airflow: Airflow
) -> None:
    name, dataset = f"fault_{uuid.uuid4().hex[:6]}", f"feeds.f_{uuid.uuid4().hex[:6]}"
    day = unique_day()
    contract = f"""
name: {name}
partitioned: daily
when: {dataset}
trigger: {{target: airflow, dag_id: report_daily}}
"""
    with fault_proxy(airflow.server.port) as proxy:
        cluster.write_contracts({"c.yaml": contract})
        cluster.write_config(
            "http://127.0.0.1:9", targets={"airflow": airflow.target(url=proxy.url, timeout=30.0)}
        )
        proxy.mode, proxy.withhold_match = "withhold", b"/dagRuns"
        baton = cluster.run()
        cluster.cli("publish", dataset, "--partition", day)
        trigger_id = f"baton:{name}:{day}:0"
        runs = f"dags/report_daily/dagRuns/{trigger_id}"

        def run_exists() -> bool:
            try:
                return bool(airflow.api("GET", runs))
            except httpx.HTTPStatusError:
                return False

        wait_until(run_exists)
        baton.kill9()
        proxy.mode = "pass"
        cluster.run()
        record = wait_until(
            lambda: (r := trigger_record(cluster, trigger_id)) and r["state"] == "succeeded" and r,
            timeout=30,
        )
    assert record["downstream_ref"] == f"report_daily/{trigger_id}"
    found = airflow.api("GET", "dags/report_daily/dagRuns", params={"run_id_pattern": trigger_id})
    assert [r["dag_run_id"] for r in found["dag_runs"]] == [trigger_id]


# Retries that outlast an orchestrator's restart.
PATIENT = {"initial": "0.5s", "max_delay": "2s", "max_attempts": 200}

DAGSTER_CONTRACT = """
name: {name}
partitioned: daily
when: {dataset}
trigger:
  target: dagster
  job: report_job
  location: dagster_defs.py
  run_config: {{ops: {{build_report: {{config: {{run_date: "{{{{ partition }}}}"}}}}}}}}
"""


@pytest.mark.dagster
def test_a_worker_killed_after_dagster_took_the_call_makes_one_run(
    cluster: Cluster, dagster: Dagster
) -> None:
    name, dataset = f"fault_{uuid.uuid4().hex[:6]}", f"feeds.f_{uuid.uuid4().hex[:6]}"
    with fault_proxy(dagster.server.port) as proxy:
        cluster.write_contracts({"c.yaml": DAGSTER_CONTRACT.format(name=name, dataset=dataset)})
        target = dagster.target(url=proxy.url + "/graphql", timeout=30.0)
        cluster.write_config("http://127.0.0.1:9", targets={"dagster": target})
        proxy.mode, proxy.withhold_match = "withhold", b"launchRun"
        baton = cluster.run()
        cluster.cli("publish", dataset, "--partition", "2026-11-23")
        trigger_id = f"baton:{name}:2026-11-23:0"
        wait_until(lambda: runs_tagged(dagster, trigger_id))
        baton.kill9()  # Dagster launched the run; Baton never heard its id
        proxy.mode = "pass"
        cluster.run()  # the retry finds the run by its tag instead of launching again
        record = wait_until(lambda: (r := trigger_record(cluster, trigger_id))
                            and r["state"] == "succeeded" and r, timeout=30)  # fmt: skip
    runs = runs_tagged(dagster, trigger_id)
    assert len(runs) == 1
    assert record["downstream_ref"] == runs[0]["runId"]


@pytest.mark.dagster
def test_dagster_stopped_during_dispatch_then_started_again_makes_one_run(
    cluster: Cluster, dagster: Dagster
) -> None:
    name, dataset = f"stop_{uuid.uuid4().hex[:6]}", f"feeds.s_{uuid.uuid4().hex[:6]}"
    cluster.write_contracts({"c.yaml": DAGSTER_CONTRACT.format(name=name, dataset=dataset)})
    cluster.write_config("http://127.0.0.1:9", targets={"dagster": dagster.target()}, retry=PATIENT)
    cluster.run()
    trigger_id = f"baton:{name}:2026-11-23:0"
    publish_through_an_outage(cluster, dagster.server, dataset, "2026-11-23", trigger_id)
    assert len(runs_tagged(dagster, trigger_id)) == 1


@pytest.mark.airflow
def test_airflow_stopped_during_dispatch_then_started_again_makes_one_run(
    cluster: Cluster, airflow: Airflow
) -> None:
    name, dataset, day = (
        f"stop_{uuid.uuid4().hex[:6]}",
        f"feeds.s_{uuid.uuid4().hex[:6]}",
        unique_day(),
    )
    contract = f"""
name: {name}
partitioned: daily
when: {dataset}
trigger: {{target: airflow, dag_id: report_daily}}
"""
    cluster.write_contracts({"c.yaml": contract})
    cluster.write_config("http://127.0.0.1:9", targets={"airflow": airflow.target()}, retry=PATIENT)
    cluster.run()
    trigger_id = f"baton:{name}:{day}:0"
    publish_through_an_outage(cluster, airflow.server, dataset, day, trigger_id)
    found = airflow.api("GET", "dags/report_daily/dagRuns", params={"run_id_pattern": trigger_id})
    assert [r["dag_run_id"] for r in found["dag_runs"]] == [trigger_id]
