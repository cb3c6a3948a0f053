"""Backfills through real workers and a real sink: the plan, throttling by runs in
flight, skipping what ran or is not ready, --force, and resuming after kill -9."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import yaml

from broker.contracts.model import Contract
from broker.time.backfill import BackfillRejected, plan
from tests.conftest import Cluster, Sink, wait_until

REPORT = """
name: report
partitioned: daily
when: {all_of: [warehouse.orders, warehouse.fx]}
trigger:
  target: hook
  body: {day: "{{ partition }}", missing: "{{ missing }}"}
"""


def contract(text: str = REPORT) -> Contract:
    return Contract.parse(yaml.safe_load(text))


def test_a_plan_runs_newest_first_unless_asked_otherwise() -> None:
    c = contract()
    assert plan(c, "2026-11-01", "2026-11-03") == ["2026-11-03", "2026-11-02", "2026-11-01"]
    assert plan(c, "2026-11-01", "2026-11-03", "oldest-first")[0] == "2026-11-01"
    with pytest.raises(BackfillRejected, match="comes after"):
        plan(c, "2026-11-03", "2026-11-01")
    with pytest.raises(BackfillRejected, match="partitioned daily"):
        plan(c, "2026-11", "2026-12")
    unpartitioned = contract(REPORT.replace("partitioned: daily", "partitioned: none"))
    with pytest.raises(BackfillRejected, match="unpartitioned"):
        plan(unpartitioned, "a", "b")
    weekly = contract(REPORT.replace("daily", "weekly"))
    assert plan(weekly, "2026-W52", "2027-W02", "oldest-first") == [
        "2026-W52", "2026-W53", "2027-W01", "2027-W02"]  # fmt: skip


def start(cluster: Cluster, delay: float = 0.0) -> Sink:
    sink = cluster.sink(delay=delay)
    cluster.write_contracts({"report.yaml": REPORT})
    cluster.write_config(sink.url, worker={"claim_idle": "1s", "track_initial": "0.2s",
                                           "track_max_delay": "0.5s"})  # fmt: skip
    cluster.run()
    return sink


def status(cluster: Cluster, backfill_id: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(
        cluster.cli("backfill", "status", backfill_id, "--json").stdout
    )
    return result


def begin(cluster: Cluster, *args: str) -> str:
    out = json.loads(cluster.cli("backfill", "report", *args, "--json").stdout)
    backfill_id: str = out["id"]
    return backfill_id


def days(sink: Sink) -> list[str]:
    return [d["body"]["day"] for d in sink.deliveries() if d["path"] == "/hook"]


def test_force_fires_every_day_newest_first_at_most_two_in_flight(cluster: Cluster) -> None:
    sink = start(cluster, delay=0.3)
    dry = cluster.cli("backfill", "report", "--from", "2026-10-01", "--to", "2026-10-03",
                      "--dry-run").stdout  # fmt: skip
    assert "3 partitions (nothing is started by --dry-run)" in dry
    assert "2026-10-03       skip   missing warehouse.orders[2026-10-03]" in dry
    backfill_id = begin(cluster, "--from", "2026-10-01", "--to", "2026-10-10", "--force",
                        "--max-in-flight", "2")  # fmt: skip

    done = wait_until(lambda: (s := status(cluster, backfill_id))["state"] == "done" and s,
                      timeout=60, every=0.5)  # fmt: skip
    assert done["fired"] == 10 and done["skipped"] == 0
    newest_first = [f"2026-10-{d:02d}" for d in range(10, 0, -1)]
    got = days(sink)  # two run at a time, so neighbours may arrive swapped
    assert sorted(got) == sorted(newest_first)
    assert all(abs(newest_first.index(day) - i) <= 1 for i, day in enumerate(got)), got
    assert all(d["body"]["missing"] == [f"warehouse.orders[{d['body']['day']}]",
                                        f"warehouse.fx[{d['body']['day']}]"]
               for d in sink.deliveries())  # fmt: skip
    peaks = [p["in_flight"] for p in done["in_flight_trace"]]
    assert max(peaks) == 2 and peaks[-1] == 0
    listed = httpx.get(cluster.api + "/v1/backfills").json()["backfills"]
    assert [b["id"] for b in listed] == [backfill_id]


def test_without_force_what_ran_and_what_is_not_ready_are_skipped(cluster: Cluster) -> None:
    sink = start(cluster)
    for dataset in ("warehouse.orders", "warehouse.fx"):
        cluster.cli("publish", dataset, "--partition", "2026-10-02")  # fires live
    wait_until(lambda: days(sink) == ["2026-10-02"])
    backfill_id = begin(cluster, "--from", "2026-10-01", "--to", "2026-10-03")
    done = wait_until(lambda: (s := status(cluster, backfill_id))["state"] == "done" and s)
    assert done["fired"] == 0 and done["skipped"] == 3
    assert done["skips"]["2026-10-02"] == "already ran as baton:report:2026-10-02:0"
    assert done["skips"]["2026-10-01"].startswith("not ready: missing warehouse.orders")
    # --force reruns the day that ran, as its next generation
    rerun = begin(cluster, "--from", "2026-10-02", "--to", "2026-10-02", "--force")
    done = wait_until(lambda: (s := status(cluster, rerun))["state"] == "done" and s)
    assert done["runs"] == {"2026-10-02": "baton:report:2026-10-02:1"}
    assert sorted(sink.distinct_keys()) == ["baton:report:2026-10-02:0",
                                            "baton:report:2026-10-02:1"]  # fmt: skip


def test_a_backfill_killed_halfway_resumes_and_fires_each_day_once(cluster: Cluster) -> None:
    sink = start(cluster, delay=0.5)
    backfill_id = begin(cluster, "--from", "2026-09-01", "--to", "2026-09-08", "--force",
                        "--max-in-flight", "1")  # fmt: skip
    wait_until(lambda: status(cluster, backfill_id)["fired"] >= 3, timeout=30, every=0.2)
    cluster.procs[-1].kill9()  # `baton run`, mid-backfill
    assert status(cluster, backfill_id)["state"] == "running"
    cluster.run()
    done = wait_until(lambda: (s := status(cluster, backfill_id))["state"] == "done" and s,
                      timeout=60, every=0.5)  # fmt: skip
    assert done["fired"] == 8
    expected = {f"baton:report:2026-09-{d:02d}:0" for d in range(1, 9)}
    assert sink.distinct_keys() == expected  # a repeat after kill -9 reuses its key


def test_bad_backfills_get_clear_answers(cluster: Cluster) -> None:
    start(cluster)
    body = {"contract": "report", "from": "2026-10-03", "to": "2026-10-01"}
    answer = httpx.post(cluster.api + "/v1/backfills", json=body)
    assert answer.status_code == 422 and "comes after" in answer.json()["detail"]
    answer = httpx.post(cluster.api + "/v1/backfills", json=body | {"contract": "nope"})
    assert answer.status_code == 404
    answer = httpx.post(cluster.api + "/v1/backfills",
                        json=body | {"to": "2026-10-05", "dry_run": True})  # fmt: skip
    assert answer.status_code == 200 and len(answer.json()["plan"]) == 3
    result = cluster.cli("backfill", "report", "--from", "2026-10-01", check=False)
    assert result.returncode == 2 and "give --from and --to" in result.stderr
    result = cluster.cli("backfill", "status", "bf-nope", check=False)
    assert result.returncode == 1 and "no backfill 'bf-nope'" in result.stderr
