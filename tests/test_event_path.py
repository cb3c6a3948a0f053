"""The whole path through real processes: HTTP API -> Redis -> worker -> webhook sink."""

from __future__ import annotations

import json

import httpx
import pytest

from broker.embedded_redis import free_port
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

GATED = """
name: gated
partitioned: daily
when:
  all_of:
    - ledger.entries
    - {dataset: ledger.rates, where: "metadata.row_count > 0"}
trigger: {target: hook}
"""

ROUTED = [
    {"event_id": "o1", "feeds": ["daily_report"], "cannot": []},
    {"event_id": "f1", "feeds": ["daily_report"], "cannot": []},
]


def publish(cluster: Cluster, *events: dict[str, object]) -> httpx.Response:
    body = events[0] if len(events) == 1 else {"events": list(events)}
    return httpx.post(cluster.api + "/v1/events", json=body, timeout=10)


@pytest.fixture
def running(cluster: Cluster) -> tuple[Cluster, Sink]:
    cluster.write_contracts(
        {"daily.yaml": DAILY_ALL_OF, "any.yaml": DAILY_ANY_OF, "gated.yaml": GATED}
    )
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
    assert answer.json() == {"accepted": ["o1", "f1"], "duplicates": [], "routes": ROUTED}
    deliveries = wait_until(sink.deliveries)
    assert len(deliveries) == 1
    delivery = deliveries[0]
    assert delivery["idempotency_key"] == "baton:daily_report:2026-11-23:0"
    assert delivery["body"] == {"day": "2026-11-23", "rows": 42}
    assert delivery["verified"] is True and delivery["signature"].startswith("sha256=")
    headers = {"X-Baton-Timestamp": "1", "X-Baton-Signature": "sha256=00"}
    forged = httpx.post(sink.url + "/hook", json={"day": "2026-11-23"}, headers=headers)
    assert forged.status_code == 401
    assert len(sink.deliveries()) == 1


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
    assert again.json() == {"accepted": [], "duplicates": ["o1", "f1"], "routes": ROUTED}
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
    publish(cluster, {"dataset": "feeds.b", "partition": "2026-11-23", "event_id": "b1"})
    [delivery] = wait_until(sink.deliveries)
    # No body given: the default one, with the inputs the trigger fired with.
    body = delivery["body"]
    assert body["trigger_id"] == "baton:first_feed:2026-11-23:0" and body["generation"] == 0
    assert body["inputs"]["feeds.b"]["event_id"] == "b1"
    assert [e["event_id"] for e in body["inputs"]["feeds.b"]["events"]] == ["b1"]
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
    # A webhook starts no run: the reference is what the receiver answered.
    answer = '{"received":"baton:daily_report:2026-11-23:0","repeat":false}'
    assert (
        f"trigger: baton:daily_report:2026-11-23:0 succeeded (attempts 1) -> HTTP 200: {answer}"
        in text
    )
    listing = cluster.cli("triggers").stdout
    assert "baton:daily_report:2026-11-23:0" in listing
    assert "succeeded" in listing


def test_explain_names_the_event_a_where_refused(running: tuple[Cluster, Sink]) -> None:
    cluster, sink = running
    publish(
        cluster,
        {"dataset": "ledger.entries", "partition": "2026-11-23", "event_id": "l1"},
        {"dataset": "ledger.rates", "partition": "2026-11-23", "event_id": "r0",
         "occurred_at": "2026-11-24T01:00:00Z", "metadata": {"row_count": 0}},
    )  # fmt: skip
    report = wait_until(lambda: _explained_input(cluster, "gated", "2026-11-23", "ledger.entries"))
    rates = next(i for i in report["inputs"] if i["dataset"] == "ledger.rates")
    assert (rates["state"], rates["refused_event_id"], rates["refused_by"]) == (
        "missing", "r0", "metadata.row_count > 0")  # fmt: skip
    text = cluster.cli("explain", "gated", "2026-11-23").stdout
    assert ("missing   ledger.rates[2026-11-23] (event r0 at 2026-11-24T01:00:00Z came, "
            "refused by where: metadata.row_count > 0)") in text  # fmt: skip
    assert sink.deliveries() == []


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


def test_a_2_mib_body_is_taken_whole_and_one_past_the_limit_is_413(cluster: Cluster) -> None:
    sink = cluster.sink()
    cluster.write_contracts({"daily.yaml": DAILY_ALL_OF})
    cluster.port = free_port()
    limits = {"host": "127.0.0.1", "port": cluster.port, "max_body_bytes": 3 * 2**20}
    cluster.write_config(sink.url, api=limits)
    cluster.run()

    def batch(n: int, tag: str) -> bytes:
        blob = "x" * (50 * 1024)
        events = [{"dataset": "big.feed", "partition": "2026-11-23", "event_id": f"{tag}-{i}",
                   "metadata": {"blob": blob}} for i in range(n)]  # fmt: skip
        return json.dumps({"events": events}).encode()

    two_mib = batch(41, "ok")
    assert 2 * 2**20 <= len(two_mib) < 3 * 2**20
    answer = httpx.post(cluster.api + "/v1/events", content=two_mib, timeout=30,
                        headers={"Content-Type": "application/json"})  # fmt: skip
    assert answer.status_code == 202, answer.text[:300]
    assert len(answer.json()["accepted"]) == 41
    too_big = batch(70, "no")
    refused = httpx.post(cluster.api + "/v1/events", content=too_big, timeout=30,
                         headers={"Content-Type": "application/json"})  # fmt: skip
    assert refused.status_code == 413
    assert refused.json()["detail"] == f"the body is {len(too_big)} bytes; the limit is {3 * 2**20}"
    # nothing of the refused body was written: its first event is still new
    one = httpx.post(cluster.api + "/v1/events", timeout=10,
                     json={"dataset": "big.feed", "event_id": "no-0"})  # fmt: skip
    assert one.json()["accepted"] == ["no-0"]
