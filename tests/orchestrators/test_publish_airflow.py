"""Publishing from Airflow 3 for real: upstream DAG runs announce their outlets through
Baton's listener plugin (no DAG changes) or its helper, and Baton starts the downstream.

The DAGs are in `airflow_dags/baton_publish_dags.py`; the scheduler's environment points
them at the Baton each test runs on `servers.BATON_PORT`."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cluster, stream_events, wait_until
from tests.orchestrators import envs, servers
from tests.orchestrators.conftest import Airflow
from tests.orchestrators.helpers import wait_succeeded
from tests.orchestrators.test_airflow import unique_day

pytestmark = [pytest.mark.orchestrators, pytest.mark.airflow]

DOWNSTREAM = """
name: {name}
partitioned: daily
when: {dataset}
trigger:
  target: airflow
  dag_id: report_daily
  conf:
    run_date: "{{{{ partition }}}}"
    rows: "{{{{ inputs['{dataset}'].metadata.get('row_count') }}}}"
"""


def start_baton(cluster: Cluster, airflow: Airflow, dataset: str) -> str:
    name = f"after_{uuid.uuid4().hex[:6]}"
    cluster.port = servers.BATON_PORT  # where the DAGs publish
    cluster.write_contracts({"down.yaml": DOWNSTREAM.format(name=name, dataset=dataset)})
    cluster.write_config(
        "http://127.0.0.1:9",
        targets={"airflow": airflow.target()},
        producers=[servers.baton_producer(["warehouse.*"])],
    )
    cluster.run()
    return name


def events(cluster: Cluster, dataset: str) -> list[dict[str, Any]]:
    return [e for e in stream_events(cluster.redis_url) if e["dataset"] == dataset]


def run_upstream(airflow: Airflow, dag_id: str, **body: Any) -> str:
    wait_until(lambda: _has_dag(airflow, dag_id), timeout=90, every=1)
    run = airflow.api("POST", f"dags/{dag_id}/dagRuns", json={"logical_date": None, **body})
    run_id: str = run["dag_run_id"]
    wait_until(lambda: _state(airflow, dag_id, run_id) in ("success", "failed"),
               timeout=120, every=1)  # fmt: skip
    assert _state(airflow, dag_id, run_id) == "success"
    return run_id


def _has_dag(airflow: Airflow, dag_id: str) -> bool:
    return any(
        d["dag_id"] == dag_id for d in airflow.api("GET", "dags", params={"limit": 100})["dags"]
    )


def _state(airflow: Airflow, dag_id: str, run_id: str) -> str:
    state: str = airflow.api("GET", f"dags/{dag_id}/dagRuns/{run_id}")["state"]
    return state


def downstream(airflow: Airflow, name: str, day: str) -> dict[str, Any]:
    run: dict[str, Any] = airflow.api("GET", f"dags/report_daily/dagRuns/baton:{name}:{day}:0")
    return run


def test_the_listener_publishes_a_partitioned_outlet_with_its_extra(
    cluster: Cluster, airflow: Airflow
) -> None:
    dataset, day = "warehouse.orders_airflow_partitioned", unique_day()
    name = start_baton(cluster, airflow, dataset)
    run_id = run_upstream(airflow, "load_orders_partitioned", partition_key=day)

    wait_succeeded(cluster, name)
    assert downstream(airflow, name, day)["conf"] == {"run_date": day, "rows": 42}
    [event] = events(cluster, dataset)
    assert event["partition"] == day and event["metadata"] == {"row_count": 42}
    assert event["event_id"] == f"airflow/load_orders_partitioned/{run_id}/load/{dataset}/{day}"
    assert event["producer"] == "airflow://load_orders_partitioned/load"


def test_while_baton_is_down_the_task_succeeds_and_its_event_waits_in_the_spool(
    cluster: Cluster, airflow: Airflow
) -> None:
    """A daily DAG's partition comes from its data interval; Baton is not running when
    the task finishes, and the spool delivers the event once it is back."""
    dataset, day = "warehouse.orders_airflow_daily", unique_day()
    run_id = run_upstream(airflow, "load_orders_daily", logical_date=f"{day}T00:00:00Z")
    event_id = f"airflow/load_orders_daily/{run_id}/load_daily/{dataset}/{day}"
    spool = Path(airflow.server.env["BATON_SPOOL_DIR"])
    waiting = wait_until(lambda: [p for p in spool.glob("*.json") if event_id in p.read_text()])
    assert json.loads(waiting[0].read_text())[0]["partition"] == day

    name = start_baton(cluster, airflow, dataset)
    flush = subprocess.run(
        [str(envs.with_baton("airflow") / "python"), "-m", "adapters.publish", "flush"],
        env=airflow.server.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert flush.returncode == 0, flush.stdout + flush.stderr
    wait_succeeded(cluster, name)
    assert downstream(airflow, name, day)["conf"] == {"run_date": day, "rows": None}
    # the scheduler's own latest run of this @daily DAG publishes another day: not ours
    assert [e["event_id"] for e in events(cluster, dataset) if e["partition"] == day] == [event_id]


def test_the_helper_publishes_once_though_the_task_is_retried(
    cluster: Cluster, airflow: Airflow
) -> None:
    dataset, day = "warehouse.orders_airflow_helper", unique_day()
    name = start_baton(cluster, airflow, dataset)
    run_id = run_upstream(airflow, "load_orders_helper", conf={"day": day})

    tries = airflow.api("GET", f"dags/load_orders_helper/dagRuns/{run_id}/taskInstances")
    assert tries["task_instances"][0]["try_number"] == 2  # published in both tries
    wait_succeeded(cluster, name)
    assert downstream(airflow, name, day)["conf"] == {"run_date": day, "rows": 7}
    assert [e["event_id"] for e in events(cluster, dataset)] == [
        f"airflow/load_orders_helper/{run_id}/load_with_helper/{dataset}/{day}"
    ]
    rows = json.loads(cluster.cli("triggers", "--json").stdout)
    assert [r["id"] for r in rows] == [f"baton:{name}:{day}:0"]
