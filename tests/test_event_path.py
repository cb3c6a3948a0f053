"""The whole path through real processes: HTTP API -> Redis -> worker -> webhook sink."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Cluster, Sink, wait_until

DAILY_ALL_OF = """
name: daily_report
partitioned: daily
when:
  all_of:
    - warehouse.orders
    - warehouse.fx_rates
trigger:
  target: hook
  body: {day: "{{ partition }}", rows: "{{ inputs['warehouse.orders'].metadata.get('row_count') }}"}
"""

DAILY_ANY_OF = """
name: first_feed
partitioned: daily
when:
  any_of: [feeds.a, feeds.b]
trigger: {target: hook}
"""


def publish(cluster: Cluster, *events: dict[str, object]) -> httpx.Response:
    body = events[0] if len(events) == 1 else {"events": list(events)}
    return httpx.post(cluster.api + "/v1/events", json=body, timeout=10)


@pytest.fixture
def running(cluster: Cluster) -> tuple[Cluster, Sink]:
    cluster.write_contracts({"daily.yaml": DAILY_ALL_OF, "any.yaml": DAILY_ANY_OF})
    sink = cluster.sink()
    cluster.write_config(sink.url)
    cluster.run()
    return cluster, sink


def test_two_inputs_for_the_same_day_trigger_once(running: tuple[Cluster, Sink]) -> None:
    cluster, sink = running
    answer = publish(
        cluster,
        {"dataset": "warehouse.orders", "partition": "2026-11-23", "event_id": "o1",
         "metadata": {"row_count": 42}},
        {"dataset": "warehouse.fx_rates", "partition": "2026-11-23", "event_id": "f1"},
    )  # fmt: skip
    assert answer.status_code == 202
    assert answer.json() == {"accepted": ["o1", "f1"], "duplicates": []}
    deliveries = wait_until(sink.deliveries)
    assert len(deliveries) == 1
    delivery = deliveries[0]
    assert delivery["idempotency_key"] == "baton:daily_report:2026-11-23:0"
    assert delivery["body"] == {"day": "2026-11-23", "rows": 42}


def test_one_input_does_not_trigger(running: tuple[Cluster, Sink]) -> None:
    cluster, sink = running
    publish(cluster, {"dataset": "warehouse.orders", "partition": "2026-11-23"})
    # Wait until the worker has recorded the event, then check nothing was sent.
    explain = wait_until(lambda: _explained_input(cluster, "daily_report", "2026-11-23"))
    assert explain["condition_holds"] is False
    assert [i["state"] for i in explain["inputs"]] == ["satisfied", "missing"]
    assert sink.deliveries() == []


def test_the_same_inputs_again_do_not_trigger_again(running: tuple[Cluster, Sink]) -> None:
    cluster, sink = running
    events = [
        {"dataset": "warehouse.orders", "partition": "2026-11-23", "event_id": "o1"},
        {"dataset": "warehouse.fx_rates", "partition": "2026-11-23", "event_id": "f1"},
    ]
    publish(cluster, *events)
    wait_until(sink.deliveries)
    again = publish(cluster, *events)
    assert again.json() == {"accepted": [], "duplicates": ["o1", "f1"]}
    # A fresh event afterwards is matched, so the worker is past the duplicates.
    publish(cluster, {"dataset": "feeds.a", "partition": "2026-11-23"})
    wait_until(lambda: len(sink.deliveries()) == 2)
    assert sorted(sink.distinct_keys()) == [
        "baton:daily_report:2026-11-23:0",
        "baton:first_feed:2026-11-23:0",
    ]


def test_a_second_day_triggers_separately(running: tuple[Cluster, Sink]) -> None:
    cluster, sink = running
    for day in ("2026-11-23", "2026-11-24"):
        publish(
            cluster,
            {"dataset": "warehouse.orders", "partition": day},
            {"dataset": "warehouse.fx_rates", "partition": day},
        )
    wait_until(lambda: len(sink.deliveries()) == 2)
    assert sink.distinct_keys() == {
        "baton:daily_report:2026-11-23:0",
        "baton:daily_report:2026-11-24:0",
    }


def test_any_of_triggers_on_the_first_input(running: tuple[Cluster, Sink]) -> None:
    cluster, sink = running
    publish(cluster, {"dataset": "feeds.b", "partition": "2026-11-23"})
    wait_until(sink.deliveries)
    publish(cluster, {"dataset": "feeds.a", "partition": "2026-11-23"})
    wait_until(lambda: _explained_input(cluster, "first_feed", "2026-11-23", "feeds.a"))
    assert sink.distinct_keys() == {"baton:first_feed:2026-11-23:0"}


def test_explain_and_triggers_commands_tell_why(running: tuple[Cluster, Sink]) -> None:
    cluster, _ = running
    publish(
        cluster,
        {"dataset": "warehouse.orders", "partition": "2026-11-23", "event_id": "o1"},
        {"dataset": "warehouse.fx_rates", "partition": "2026-11-23", "event_id": "f1"},
    )
    wait_until(lambda: _trigger_state(cluster) == "succeeded")
    text = cluster.cli("explain", "daily_report", "2026-11-23").stdout
    assert "condition holds: yes" in text
    assert "satisfied warehouse.orders[2026-11-23] event o1" in text
    assert "trigger: baton:daily_report:2026-11-23:0 succeeded (attempts 1)" in text
    listing = cluster.cli("triggers").stdout
    assert "baton:daily_report:2026-11-23:0" in listing
    assert "succeeded" in listing


def _trigger_state(cluster: Cluster) -> str | None:
    triggers = httpx.get(cluster.api + "/v1/triggers", timeout=5).json()["triggers"]
    return triggers[0]["state"] if triggers else None


def _explained_input(
    cluster: Cluster, contract: str, partition: str, dataset: str | None = None
) -> dict[str, object] | None:
    url = f"{cluster.api}/v1/contracts/{contract}/partitions/{partition}"
    report: dict[str, object] = httpx.get(url, timeout=5).json()
    inputs = report["inputs"]
    assert isinstance(inputs, list)
    recorded = [i for i in inputs if i["state"] == "satisfied"]
    if dataset is not None:
        recorded = [i for i in recorded if i["dataset"] == dataset]
    return report if recorded else None
