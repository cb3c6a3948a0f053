"""POST /v1/openlineage with run events built by the real openlineage-python client,
and with the shape the Airflow OpenLineage provider sends (namespace/name, nominal
time, output statistics)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from openlineage.client.event_v2 import Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import nominal_time_run, output_statistics_output_dataset
from openlineage.client.serde import Serde

from tests.conftest import Cluster, Sink, wait_until

CONTRACT = """
name: orders_report
partitioned: daily
when: warehouse.orders
trigger: {target: hook, body: {day: "{{ partition }}",
          rows: "{{ inputs['warehouse.orders'].metadata.row_count }}"}}
"""


@pytest.fixture
def running(cluster: Cluster) -> tuple[Cluster, Sink]:
    sink = cluster.sink()
    cluster.write_contracts({"report.yaml": CONTRACT})
    cluster.write_config(sink.url, openlineage={
        "datasets": {"postgres://warehouse:5432/public.orders": "warehouse.orders"},
        "partition_from": ["facet", "nominal_time", "name"],
        "name_pattern": r"/dt=(?P<partition>\d{4}-\d{2}-\d{2})$",
    })  # fmt: skip
    cluster.run()
    return cluster, sink


def run_event(state: RunState, outputs: list[OutputDataset], run_id: str | None = None) -> str:
    nominal = nominal_time_run.NominalTimeRunFacet(nominalStartTime="2026-11-23T00:00:00Z")
    event = RunEvent(
        eventType=state,
        eventTime=datetime.now(UTC).isoformat(),
        run=Run(runId=run_id or str(uuid.uuid4()), facets={"nominalTime": nominal}),
        job=Job(namespace="airflow", name="load_orders.load"),
        producer="https://github.com/apache/airflow/tree/providers-openlineage/2.6.0",
        outputs=outputs,
    )
    text: str = Serde.to_json(event)
    return text


def orders(rows: int = 12) -> OutputDataset:
    stats = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(rowCount=rows)
    return OutputDataset(namespace="postgres://warehouse:5432", name="public.orders",
                         outputFacets={"outputStatistics": stats})  # fmt: skip


def post(cluster: Cluster, body: str) -> httpx.Response:
    return httpx.post(cluster.api + "/v1/openlineage", content=body, timeout=10,
                      headers={"Content-Type": "application/json"})  # fmt: skip


def test_complete_publishes_each_output_and_fires_the_contract(
    running: tuple[Cluster, Sink],
) -> None:
    cluster, sink = running
    answer = post(cluster, run_event(RunState.COMPLETE, [orders(rows=12)]))
    assert answer.status_code == 202, answer.text
    assert len(answer.json()["accepted"]) == 1 and answer.json()["ignored"] == 0
    delivery = wait_until(sink.deliveries)[0]
    assert delivery["body"] == {"day": "2026-11-23", "rows": 12}


def test_the_same_run_event_twice_publishes_once(running: tuple[Cluster, Sink]) -> None:
    cluster, _ = running
    body = run_event(RunState.COMPLETE, [orders()])
    first, again = post(cluster, body), post(cluster, body)
    assert again.json()["duplicates"] == first.json()["accepted"]


def test_start_is_ignored_and_fail_is_a_failed_event(running: tuple[Cluster, Sink]) -> None:
    cluster, sink = running
    run_id = str(uuid.uuid4())
    start = post(cluster, run_event(RunState.START, [orders()], run_id))
    assert start.json() == {"accepted": [], "duplicates": [], "ignored": 1, "routes": []}
    fail = post(cluster, run_event(RunState.FAIL, [orders()], run_id))
    assert fail.status_code == 202 and len(fail.json()["accepted"]) == 1
    report = json.loads(cluster.cli("explain", "orders_report", "2026-11-23", "--json").stdout)
    assert report["condition_holds"] is False
    assert [i["state"] for i in report["inputs"]] == ["failed"]
    assert sink.deliveries() == []


def test_partition_from_the_dataset_name_and_an_unmapped_name(
    running: tuple[Cluster, Sink],
) -> None:
    cluster, _ = running
    lake = OutputDataset(namespace="s3://lake", name="events/dt=2026-11-20")
    answer = post(cluster, run_event(RunState.COMPLETE, [lake]))
    accepted = answer.json()["accepted"]
    assert accepted and accepted[0].endswith("/COMPLETE/s3://lake/events/dt=2026-11-20")


def test_a_batch_and_bad_run_events_are_named(running: tuple[Cluster, Sink]) -> None:
    cluster, _ = running
    good = json.loads(run_event(RunState.COMPLETE, [orders()]))
    bad: dict[str, Any] = {"eventType": "COMPLETE", "run": {}, "job": {"name": "j"}}
    answer = post(cluster, json.dumps([good, bad, {"eventType": "DONE"}]))
    assert answer.status_code == 422
    fields = {e["field"] for e in answer.json()["errors"]}
    assert fields == {"[1].run.runId", "[2].eventType"}
    # nothing of the batch was written: the good event is still new
    again = post(cluster, json.dumps(good))
    assert len(again.json()["accepted"]) == 1
