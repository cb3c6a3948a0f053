"""After the dispatch: retries per contract, dead letters, one alert, `dlq retry`, and
following runs to publish what a contract `produces` (real Redis, processes, sinks)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from broker.embedded_redis import free_port
from tests.conftest import Cluster, wait_until

DOWN = """
name: to_down_target
partitioned: daily
when: feeds.a
retry: {max_attempts: 2}
trigger: {target: down}
"""

CHAIN = """
name: first
partitioned: daily
when: raw.orders
trigger: {target: hook, body: {step: first}}
produces: [clean.orders]
---
name: second
partitioned: daily
when: clean.orders
trigger: {target: hook, body: {step: second, from: "{{ inputs['clean.orders'].event_id }}"}}
"""


def publish(cluster: Cluster, dataset: str, partition: str) -> None:
    answer = httpx.post(cluster.api + "/v1/events", timeout=10,
                        json={"dataset": dataset, "partition": partition})  # fmt: skip
    assert answer.status_code == 202, answer.text


def triggers(cluster: Cluster) -> dict[str, dict[str, Any]]:
    rows = json.loads(cluster.cli("triggers", "--json").stdout)
    return {row["id"]: row for row in rows}


def test_a_dead_letter_alerts_once_and_dlq_retry_delivers_it_once(cluster: Cluster) -> None:
    down_port = free_port()  # nothing listens here yet: every call is refused (transient)
    alerts = cluster.sink()
    cluster.write_contracts({"down.yaml": DOWN})
    cluster.write_config(
        alerts.url,
        targets={"down": {"kind": "webhook", "url": f"http://127.0.0.1:{down_port}/hook",
                          "secret": "s3cret"}},
        alerts=[{"kind": "webhook", "url": alerts.url + "/alerts", "secret": "s3cret"}],
    )  # fmt: skip
    cluster.run()
    cluster.start("worker", name="second-worker")  # two workers: still one alert
    publish(cluster, "feeds.a", "2026-11-23")
    trigger_id = "baton:to_down_target:2026-11-23:0"

    alert = wait_until(lambda: [d for d in alerts.deliveries() if d["path"] == "/alerts"])
    facts = alert[0]["body"]["baton"]
    assert facts["trigger_id"] == trigger_id
    assert facts["attempts"] == 2  # the contract's retry override, not the config's 3
    assert "baton dlq retry" in alert[0]["body"]["text"]
    record = triggers(cluster)[trigger_id]
    assert record["state"] == "failed" and "after 2 attempts" in record["last_error"]

    listed = json.loads(cluster.cli("dlq", "list", "--json").stdout)
    assert [d["trigger_id"] for d in listed] == [trigger_id]
    assert httpx.get(cluster.api + "/v1/dlq").json()["dead_letters"][0]["trigger_id"] == trigger_id

    target = cluster.sink(port=down_port)  # the target is back
    assert cluster.cli("dlq", "retry", "--all").stdout.strip() == f"retried {trigger_id}"
    wait_until(lambda: triggers(cluster)[trigger_id]["state"] == "succeeded")
    assert target.distinct_keys() == {trigger_id}
    assert len(target.deliveries()) == 1
    assert json.loads(cluster.cli("dlq", "list", "--json").stdout) == []
    # still exactly one alert, from one of the two workers
    assert len([d for d in alerts.deliveries() if d["path"] == "/alerts"]) == 1


def test_retrying_what_is_not_a_dead_letter_says_so(cluster: Cluster) -> None:
    sink = cluster.sink()
    cluster.write_contracts({"down.yaml": DOWN})
    cluster.write_config(sink.url, targets={"down": {"kind": "webhook", "url": sink.url}})
    cluster.run()
    answer = httpx.post(cluster.api + "/v1/dlq/baton:nope:_:0/retry")
    assert answer.status_code == 404
    assert answer.json()["detail"] == "trigger 'baton:nope:_:0' is unknown or not failed"
    result = cluster.cli("dlq", "retry", "baton:nope:_:0", check=False)
    assert result.returncode == 1 and "not a dead letter: baton:nope:_:0" in result.stdout
    usage = cluster.cli("dlq", "retry", check=False)
    assert usage.returncode == 2 and "give trigger ids or --all" in usage.stderr


def test_a_finished_run_publishes_what_its_contract_produces(cluster: Cluster) -> None:
    sink = cluster.sink()
    cluster.write_contracts({"chain.yaml": CHAIN})
    cluster.write_config(sink.url)
    cluster.run()
    publish(cluster, "raw.orders", "2026-11-23")

    deliveries = wait_until(lambda: len(sink.deliveries()) >= 2 and sink.deliveries())
    bodies = sorted((d["body"]["step"], d["body"].get("from")) for d in deliveries)
    assert bodies == [("first", None),
                      ("second", "baton/baton:first:2026-11-23:0/clean.orders")]  # fmt: skip
    first_id = "baton:first:2026-11-23:0"
    wait_until(lambda: triggers(cluster)[first_id]["run_state"] == "succeeded")
    # A second day runs the chain again, on its own; every delivery exactly once.
    publish(cluster, "raw.orders", "2026-11-24")
    wait_until(lambda: len(sink.deliveries()) >= 4)
    keys = [d["idempotency_key"] for d in sink.deliveries()]
    assert sorted(keys) == sorted(set(keys))
    assert "baton:second:2026-11-24:0" in keys
