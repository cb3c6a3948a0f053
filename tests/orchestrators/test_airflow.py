"""The `airflow` target against a real Airflow 3 (api-server, scheduler, dag-processor)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest

from adapters.airflow import AirflowTarget
from broker.core.errors import TargetRejected, TargetUnavailable
from broker.core.settings import AirflowTarget as AirflowConfig
from broker.dispatch.target import Target, TriggerRequest
from tests.conftest import Cluster, wait_until
from tests.orchestrators import servers
from tests.orchestrators.conftest import Airflow
from tests.orchestrators.helpers import Patient, wait_succeeded

pytestmark = [pytest.mark.orchestrators, pytest.mark.airflow]


def target(airflow: Airflow, **overrides: Any) -> Target:
    """The adapter; against the real server it rides out Airflow's own 5xx answers."""
    adapter = AirflowTarget("airflow", AirflowConfig.model_validate(airflow.target(**overrides)))
    return adapter if "url" in overrides else Patient(adapter)


def unique_day() -> str:
    """A day no other test uses: Airflow allows one run per logical date and DAG."""
    n = uuid.uuid4().int
    return f"{2000 + n % 25}-{1 + n // 25 % 12:02d}-{1 + n // 300 % 28:02d}"


def request(spec: dict[str, Any], day: str | None = None) -> TriggerRequest:
    day = day or unique_day()
    trigger_id = f"baton:test_{uuid.uuid4().hex[:8]}:{day}:0"
    start = datetime.fromisoformat(f"{day}T00:00:00+00:00")
    context = {"partition_start": start.isoformat(),
               "partition_end": (start + timedelta(days=1)).isoformat()}  # fmt: skip
    return TriggerRequest(trigger_id, "test", day, 0, spec, context)


def runs_with_id(airflow: Airflow, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    found = airflow.api("GET", f"dags/{dag_id}/dagRuns", params={"run_id_pattern": run_id})
    return [r for r in found["dag_runs"] if r["dag_run_id"] == run_id]


CONTRACT = """
name: {name}
partitioned: daily
when: {dataset}
trigger:
  target: airflow
  dag_id: report_daily
  conf:
    run_date: "{{{{ partition }}}}"
    rows: "{{{{ inputs['{dataset}'].metadata.row_count }}}}"
  note: "started by Baton for {{{{ partition }}}}"
"""


def test_a_contract_starts_a_dag_run_with_conf_and_partition_and_it_succeeds(
    cluster: Cluster, airflow: Airflow
) -> None:
    name, dataset = f"report_{uuid.uuid4().hex[:6]}", f"warehouse.orders_{uuid.uuid4().hex[:6]}"
    day = unique_day()
    cluster.write_contracts({"report.yaml": CONTRACT.format(name=name, dataset=dataset)})
    cluster.write_config("http://127.0.0.1:9", targets={"airflow": airflow.target()})
    cluster.run()
    cluster.cli("publish", dataset, "--partition", day, "--meta", "row_count=7")

    trigger = wait_succeeded(cluster, name)
    run_id = f"baton:{name}:{day}:0"
    assert trigger["downstream_ref"] == f"report_daily/{run_id}"
    run = airflow.api("GET", f"dags/report_daily/dagRuns/{run_id}")
    assert run["conf"] == {"run_date": day, "rows": 7}
    assert run["partition_key"] is None  # report_daily is not a partitioned DAG
    assert run["logical_date"].startswith(f"{day}T00:00:00")
    assert run["data_interval_start"].startswith(f"{day}T00:00:00")
    assert run["note"] == f"started by Baton for {day}"

    def finished() -> bool:
        state = airflow.api("GET", f"dags/report_daily/dagRuns/{run_id}")["state"]
        assert state != "failed"
        return bool(state == "success")

    wait_until(finished, timeout=120, every=1)


async def test_the_same_trigger_dispatched_twice_makes_one_run(airflow: Airflow) -> None:
    airflow_target = target(airflow)
    req = request({"dag_id": "report_daily", "conf": {"n": 1}})
    try:
        first = await airflow_target.trigger(req)
        again = await airflow_target.trigger(req)
        status = await airflow_target.status(first.ref)
    finally:
        await airflow_target.aclose()
    assert again.ref == first.ref == f"report_daily/{req.trigger_id}"
    assert len(runs_with_id(airflow, "report_daily", req.trigger_id)) == 1
    assert status.state in ("queued", "running", "succeeded")


async def test_another_run_on_the_same_logical_date_is_a_conflict_naming_it(
    airflow: Airflow,
) -> None:
    airflow_target = target(airflow)
    day = unique_day()
    ours = request({"dag_id": "report_daily"}, day)
    other = request({"dag_id": "report_daily"}, day)
    try:
        await airflow_target.trigger(ours)
        with pytest.raises(TargetRejected, match=f"already has run '{ours.trigger_id}'"):
            await airflow_target.trigger(other)
    finally:
        await airflow_target.aclose()


async def test_an_expired_token_is_renewed_without_failing_the_trigger(airflow: Airflow) -> None:
    airflow_target = target(airflow)
    try:
        await airflow_target.trigger(request({"dag_id": "report_daily"}))
        await asyncio.sleep(servers.AIRFLOW_JWT_SECONDS + 1)  # the token it holds is dead now
        second = request({"dag_id": "report_daily"})
        await airflow_target.trigger(second)
    finally:
        await airflow_target.aclose()
    assert len(runs_with_id(airflow, "report_daily", second.trigger_id)) == 1


async def test_an_unknown_dag_is_rejected(airflow: Airflow) -> None:
    airflow_target = target(airflow)
    try:
        with pytest.raises(TargetRejected, match="DAG 'no_such_dag' not found"):
            await airflow_target.trigger(request({"dag_id": "no_such_dag"}))
    finally:
        await airflow_target.aclose()


async def test_bad_credentials_are_permanent_with_airflows_words(airflow: Airflow) -> None:
    airflow_target = target(airflow, password="wrong")
    try:
        with pytest.raises(TargetRejected, match="login: HTTP 401"):
            await airflow_target.trigger(request({"dag_id": "report_daily"}))
    finally:
        await airflow_target.aclose()


async def test_a_bad_static_token_is_permanent(airflow: Airflow) -> None:
    airflow_target = target(airflow, username=None, password=None, token="not-a-jwt")
    try:
        with pytest.raises(TargetRejected, match=r"HTTP 40[13]"):
            await airflow_target.trigger(request({"dag_id": "report_daily"}))
    finally:
        await airflow_target.aclose()


async def test_an_unreachable_airflow_is_transient(airflow: Airflow) -> None:
    airflow_target = target(airflow, url="http://127.0.0.1:9", timeout=2.0)
    try:
        with pytest.raises(TargetUnavailable):
            await airflow_target.trigger(request({"dag_id": "report_daily"}))
    finally:
        await airflow_target.aclose()


async def test_a_paused_dag_is_said_and_unpaused_only_when_asked(airflow: Airflow) -> None:
    airflow.api("PATCH", "dags/report_paused", json={"is_paused": True})
    plain, unpausing = target(airflow), target(airflow, unpause=True)
    try:
        warned = await plain.trigger(request({"dag_id": "report_paused"}))
        assert airflow.api("GET", "dags/report_paused")["is_paused"] is True
        started = await unpausing.trigger(request({"dag_id": "report_paused"}))
    finally:
        await plain.aclose()
        await unpausing.aclose()
        airflow.api("PATCH", "dags/report_paused", json={"is_paused": True})
    assert "DAG report_paused is paused" in warned.warning
    assert started.warning == ""


async def test_a_partitioned_dag_gets_the_partition_key(airflow: Airflow) -> None:
    airflow_target = target(airflow)
    req = request({"dag_id": "report_partitioned"})
    try:
        await airflow_target.trigger(req)
    finally:
        await airflow_target.aclose()
    run = airflow.api("GET", f"dags/report_partitioned/dagRuns/{req.trigger_id}")
    assert run["partition_key"] == req.partition


async def test_an_asset_event_runs_the_partitioned_dag_on_that_asset_once(
    airflow: Airflow,
) -> None:
    airflow_target = target(airflow)
    req = request({"asset_event": "baton://warehouse/revenue"})
    consumer = "dags/revenue_partitioned_consumer/dagRuns"
    try:
        first = await airflow_target.trigger(req)
        again = await airflow_target.trigger(req)
    finally:
        await airflow_target.aclose()
    assert again.ref == first.ref
    events = airflow.api("GET", "assets/events", params={"limit": 100})["asset_events"]
    ours = [e for e in events if (e.get("extra") or {}).get("baton_trigger_id") == req.trigger_id]
    assert len(ours) == 1
    assert ours[0]["partition_key"] == req.partition

    def run_for_partition() -> list[dict[str, Any]]:
        runs = airflow.api("GET", consumer, params={"limit": 100})["dag_runs"]
        return [r for r in runs if r["partition_key"] == req.partition]

    assert len(wait_until(run_for_partition, timeout=60, every=1)) == 1


async def test_online_check_finds_missing_and_paused_dags(airflow: Airflow) -> None:
    airflow_target = target(airflow)
    try:
        good = await airflow_target.check({"dag_id": "report_daily"})
        missing = await airflow_target.check({"dag_id": "nope"})
        paused = await airflow_target.check({"dag_id": "report_paused"})
        asset = await airflow_target.check({"asset_event": "baton://nowhere"})
    finally:
        await airflow_target.aclose()
    assert good == []
    assert missing == ["airflow airflow: DAG 'nope' not found"]
    assert paused == ["airflow airflow: DAG 'report_paused' is paused; its runs would wait queued"]
    assert "no asset with uri 'baton://nowhere'" in asset[0]
