"""CloudEvents 1.0 on POST /v1/events, both modes, made with the `cloudevents` SDK."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent

from tests.conftest import Cluster, Sink, wait_until

CONTRACT = """
name: report
partitioned: daily
when: {all_of: [warehouse.orders, warehouse.fx_rates]}
trigger: {target: hook, body: {day: "{{ partition }}"}}
"""


@pytest.fixture
def running(cluster: Cluster) -> tuple[Cluster, Sink]:
    sink = cluster.sink()
    cluster.write_contracts({"report.yaml": CONTRACT})
    cluster.write_config(sink.url)
    cluster.run()
    return cluster, sink


def cloud_event(dataset: str, ce_id: str, **data: Any) -> CloudEvent:
    attributes = {"type": "dev.baton.dataset.completed", "source": "urn:etl:loader", "id": ce_id}
    return CloudEvent(attributes, {"dataset": dataset, "partition": "2026-11-23", **data})


def send(cluster: Cluster, headers: dict[str, str], body: bytes | str) -> httpx.Response:
    return httpx.post(cluster.api + "/v1/events", headers=headers, content=body, timeout=10)


def test_structured_and_binary_modes_fire_a_contract(running: tuple[Cluster, Sink]) -> None:
    cluster, sink = running
    headers, body = to_structured(cloud_event("warehouse.orders", "o-1"))
    first = send(cluster, headers, body)
    assert first.status_code == 202, first.text
    assert first.json()["accepted"] == ["urn:etl:loader/o-1"]
    headers, body = to_binary(cloud_event("warehouse.fx_rates", "f-1"))
    second = send(cluster, {**headers, "content-type": "application/json"}, body)
    assert second.status_code == 202, second.text
    assert wait_until(sink.deliveries)[0]["body"] == {"day": "2026-11-23"}


def test_a_batch_and_a_resent_cloud_event(running: tuple[Cluster, Sink]) -> None:
    cluster, _ = running
    batch = [json.loads(to_structured(cloud_event("warehouse.orders", f"b-{i}"))[1])
             for i in range(3)]  # fmt: skip
    headers = {"content-type": "application/cloudevents-batch+json"}
    answer = send(cluster, headers, json.dumps(batch))
    assert answer.status_code == 202
    assert len(answer.json()["accepted"]) == 3
    again = send(cluster, headers, json.dumps(batch[:1]))
    assert again.json() == {
        "accepted": [],
        "duplicates": ["urn:etl:loader/b-0"],
        "routes": [{"event_id": "urn:etl:loader/b-0", "feeds": ["report"], "cannot": []}],
    }


def test_missing_attributes_and_bad_data_are_named(running: tuple[Cluster, Sink]) -> None:
    cluster, _ = running
    headers, body = to_binary(cloud_event("warehouse.orders", "x-1"))
    del headers["ce-id"]
    missing = send(cluster, {**headers, "content-type": "application/json"}, body)
    assert missing.status_code == 422
    assert {"field": "ce-id", "message": "required"} in missing.json()["errors"]
    envelope = json.loads(to_structured(cloud_event("warehouse.orders", "x-2"))[1])
    envelope["data"]["status"] = "maybe"
    bad = send(cluster, {"content-type": "application/cloudevents+json"}, json.dumps(envelope))
    assert bad.status_code == 422
    assert [e["field"] for e in bad.json()["errors"]] == ["data.status"]
