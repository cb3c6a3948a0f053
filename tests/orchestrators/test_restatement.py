"""Restatements with real runs in Airflow 3: `retrigger` starts the next generation as
a second DAG run of the partition, `ignore` records the new input and starts nothing."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.conftest import Cluster, wait_until
from tests.orchestrators.conftest import Airflow
from tests.orchestrators.test_airflow import unique_day

pytestmark = [pytest.mark.orchestrators, pytest.mark.airflow]

CONTRACT = """
name: {name}
partitioned: daily
on_restatement: {policy}
when: warehouse.restated_{name}
trigger: {{target: airflow, dag_id: report_daily, conf: {{day: "{{{{ partition }}}}"}}}}
"""


def triggers(cluster: Cluster, name: str) -> dict[str, dict[str, object]]:
    rows = json.loads(cluster.cli("triggers", "--json").stdout)
    return {r["id"]: r for r in rows if r["contract"] == name}


@pytest.mark.parametrize("policy", ["retrigger", "ignore"])
def test_a_restated_input(cluster: Cluster, airflow: Airflow, policy: str) -> None:
    name, day = f"re_{uuid.uuid4().hex[:6]}", unique_day()
    cluster.write_contracts({"c.yaml": CONTRACT.format(name=name, policy=policy)})
    cluster.write_config("http://127.0.0.1:9", targets={"airflow": airflow.target()},
                         worker={"track_initial": "0.5s", "track_max_delay": "1s"})  # fmt: skip
    cluster.run()
    dataset = f"warehouse.restated_{name}"
    cluster.cli("publish", dataset, "--partition", day, "--event-id", f"{name}-v1")
    first = f"baton:{name}:{day}:0"
    wait_until(lambda: triggers(cluster, name).get(first, {}).get("run_state") == "succeeded",
               timeout=120, every=1)  # fmt: skip
    cluster.cli("publish", dataset, "--partition", day, "--event-id", f"{name}-v2")  # restated
    second = f"baton:{name}:{day}:1"
    if policy == "retrigger":
        wait_until(lambda: triggers(cluster, name).get(second, {}).get("run_state") == "succeeded",
                   timeout=120, every=1)  # fmt: skip
        run = airflow.api("GET", f"dags/report_daily/dagRuns/{second}")
        assert run["conf"] == {"day": day} and run["logical_date"] is None
        assert run["data_interval_start"] is None  # Airflow sets none without a logical date
    else:
        explained = wait_until(lambda: (e := json.loads(
            cluster.cli("explain", name, day, "--json").stdout
        ))["inputs"][0]["event_id"] == f"{name}-v2" and e)  # fmt: skip
        assert explained["generation"] == 0
    assert sorted(triggers(cluster, name)) == ([first, second] if policy == "retrigger"
                                               else [first])  # fmt: skip
    first_run = airflow.api("GET", f"dags/report_daily/dagRuns/{first}")
    assert first_run["logical_date"].startswith(f"{day}T00:00:00")
