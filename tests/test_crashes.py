"""Crashes at the worst moments: kill -9 processes, restart, and count what the sink got."""

from __future__ import annotations

import httpx
import redis

from tests.conftest import Cluster, wait_until

CONTRACT = """
name: report
partitioned: daily
when: {all_of: [orders, fx]}
trigger: {target: hook}
"""
TRIGGER = "baton:report:2026-11-23:0"


def publish_day(cluster: Cluster, day: str = "2026-11-23") -> None:
    body = {
        "events": [{"dataset": "orders", "partition": day}, {"dataset": "fx", "partition": day}]
    }
    assert httpx.post(cluster.api + "/v1/events", json=body, timeout=10).status_code == 202


def trigger_state(cluster: Cluster, trigger_id: str = TRIGGER) -> str | None:
    client = redis.Redis.from_url(cluster.redis_url)
    state = client.hget(f"baton:t:{trigger_id}", "state")
    client.close()
    return state.decode() if state else None


def test_worker_killed_between_claim_and_dispatch_loses_nothing(cluster: Cluster) -> None:
    cluster.write_contracts({"report.yaml": CONTRACT})
    sink = cluster.sink()
    cluster.write_config(sink.url)
    cluster.start("api", name="api")
    matcher = cluster.start("worker", "--role", "match", name="matcher")
    cluster.wait_healthy()
    publish_day(cluster)
    wait_until(lambda: trigger_state(cluster) == "pending")  # claimed, not dispatched
    matcher.kill9()
    cluster.start("worker", name="worker")
    wait_until(lambda: trigger_state(cluster) == "succeeded")
    assert sink.distinct_keys() == {TRIGGER}
    assert len(sink.deliveries()) == 1


def test_dispatcher_that_died_holding_the_entry_is_taken_over(cluster: Cluster) -> None:
    cluster.write_contracts({"report.yaml": CONTRACT})
    sink = cluster.sink()
    cluster.write_config(sink.url)
    cluster.start("api", name="api")
    matcher = cluster.start("worker", "--role", "match", name="matcher")
    cluster.wait_healthy()
    publish_day(cluster)
    wait_until(lambda: trigger_state(cluster) == "pending")
    # A dispatcher reads the entry and dies before calling: the entry is pending under
    # a consumer that will never ack it.
    client = redis.Redis.from_url(cluster.redis_url)
    read = client.xreadgroup("dispatchers", "dead-worker", {"baton:triggers": ">"}, count=10)
    assert len(read[0][1]) == 1
    matcher.kill9()
    cluster.start("worker", name="worker")
    wait_until(lambda: trigger_state(cluster) == "succeeded")
    assert client.xpending("baton:triggers", "dispatchers")["pending"] == 0
    client.close()
    assert len(sink.deliveries()) == 1


def test_worker_killed_between_dispatch_and_ack_repeats_with_the_same_key(
    cluster: Cluster,
) -> None:
    cluster.write_contracts({"report.yaml": CONTRACT})
    sink = cluster.sink(delay=3.0)  # answers late: the worker dies mid-call
    cluster.write_config(sink.url)
    first = cluster.run()
    publish_day(cluster)
    wait_until(sink.deliveries)
    first.kill9()
    cluster.run()
    wait_until(lambda: trigger_state(cluster) == "succeeded")
    deliveries = sink.deliveries()
    assert sink.distinct_keys() == {TRIGGER}
    assert [d["repeat"] for d in deliveries] == [False, True]


def test_two_workers_on_one_stream_send_no_duplicates(cluster: Cluster) -> None:
    cluster.write_contracts({"report.yaml": CONTRACT})
    sink = cluster.sink()
    cluster.write_config(sink.url)
    cluster.start("api", name="api")
    cluster.start("worker", name="w1")
    cluster.start("worker", name="w2")
    cluster.wait_healthy()
    days = [f"2026-10-{d:02d}" for d in range(1, 31)]
    events = [{"dataset": ds, "partition": day} for day in days for ds in ("orders", "fx")]
    for start in range(0, len(events), 7):  # several requests, so both workers get some
        body = {"events": events[start : start + 7]}
        assert httpx.post(cluster.api + "/v1/events", json=body).status_code == 202
    wait_until(lambda: len(sink.deliveries()) >= 30)
    keys = [d["idempotency_key"] for d in sink.deliveries()]
    assert sorted(keys) == sorted(f"baton:report:{day}:0" for day in days)


def test_api_killed_after_answering_202_still_gets_the_event_processed(
    cluster: Cluster,
) -> None:
    cluster.write_contracts({"report.yaml": CONTRACT})
    sink = cluster.sink()
    cluster.write_config(sink.url)
    api = cluster.start("api", name="api")
    cluster.wait_healthy()
    publish_day(cluster)
    api.kill9()
    cluster.start("worker", name="worker")
    wait_until(sink.deliveries)
    assert sink.distinct_keys() == {TRIGGER}
