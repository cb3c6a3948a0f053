"""A backfill against a real Airflow 3: 30 days newest first, at most 3 runs in flight
(runs, not requests: a run counts until Airflow says it ended), Baton killed halfway
and started again, and exactly 30 runs in Airflow at the end."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.conftest import Cluster, wait_until
from tests.orchestrators.conftest import Airflow

pytestmark = [pytest.mark.orchestrators, pytest.mark.airflow]

CONTRACT = """
name: {name}
partitioned: daily
when: raw.never_published_{name}
trigger: {{target: airflow, dag_id: report_slow, conf: {{day: "{{{{ partition }}}}"}}}}
"""


def status(cluster: Cluster, backfill_id: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(
        cluster.cli("backfill", "status", backfill_id, "--json").stdout
    )
    return result


def runs(airflow: Airflow, name: str) -> list[dict[str, Any]]:
    found = airflow.api("GET", "dags/report_slow/dagRuns", params={"limit": 100})["dag_runs"]
    return [r for r in found if r["dag_run_id"].startswith(f"baton:{name}:")]


def seen(cluster: Cluster, airflow: Airflow, name: str, backfill_id: str) -> str:
    """What a failed wait found: the backfill, Airflow's runs by state, the scheduler."""
    backfill = {k: v for k, v in status(cluster, backfill_id).items() if k != "in_flight_trace"}
    states: dict[str, int] = {}
    for run in runs(airflow, name):
        states[run["state"]] = states.get(run["state"], 0) + 1
    return f"backfill {backfill}\nairflow runs {states}\n{airflow.server.tail(15)}"


@pytest.mark.timeout(900)
def test_a_30_day_backfill_keeps_3_runs_in_flight_and_survives_a_kill(
    cluster: Cluster, airflow: Airflow
) -> None:
    name = f"bf_{uuid.uuid4().hex[:6]}"
    n = uuid.uuid4().int
    # a month (not February: 30 days are needed) no other test uses
    year, month = 1990 + n % 10, [1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12][n // 10 % 11]
    first, last = f"{year}-{month:02d}-01", f"{year}-{month:02d}-30"
    cluster.write_contracts({"bf.yaml": CONTRACT.format(name=name)})
    # Airflow on a loaded 2-core host answers slowly now and then: retry like production
    # would, not the 3 quick attempts the other tests use (a dead letter ends a run early)
    patient = {"initial": "0.5s", "max_delay": "2s", "max_attempts": 12}
    cluster.write_config("http://127.0.0.1:9", targets={"airflow": airflow.target()},
                         worker={"claim_idle": "1s", "track_initial": "0.5s",
                                 "track_max_delay": "1s"}, retry=patient)  # fmt: skip
    cluster.run()
    args = ["--from", first, "--to", last, "--force", "--max-in-flight", "3", "--json"]
    backfill_id = json.loads(cluster.cli("backfill", name, *args).stdout)["id"]

    def why() -> str:
        return seen(cluster, airflow, name, backfill_id)

    wait_until(lambda: status(cluster, backfill_id)["fired"] >= 15, timeout=300, every=1,
               seen=why)  # fmt: skip
    cluster.procs[-1].kill9()  # Baton dies halfway
    assert status(cluster, backfill_id)["state"] == "running"
    cluster.run()
    done = wait_until(lambda: (s := status(cluster, backfill_id))["state"] == "done" and s,
                      timeout=420, every=1, seen=why)  # fmt: skip

    in_airflow = runs(airflow, name)
    expected = {f"baton:{name}:{year}-{month:02d}-{d:02d}:0" for d in range(1, 31)}
    missing = expected - {r["dag_run_id"] for r in in_airflow}
    records = json.loads(cluster.cli("triggers", "--limit", "100", "--json").stdout)
    assert not missing, [r for r in records if r["id"] in missing]
    assert len(in_airflow) == 30
    assert all(r["state"] == "success" for r in in_airflow)
    assert done["fired"] == 30 and done["skipped"] == 0
    assert json.loads(cluster.cli("dlq", "list", "--json").stdout) == []
    trace = [p["in_flight"] for p in done["in_flight_trace"]]
    assert max(trace) == 3 and trace[-1] == 0
    # newest first: the latest day was started before the earliest
    by_day = {r["conf"]["day"]: r["queued_at"] for r in in_airflow}
    assert by_day[last] < by_day[first]
    print("runs in flight over time:", " ".join(str(t) for t in trace))
