"""A chain across all three orchestrators, driven only by Baton:

    raw.orders -> Airflow DAG report_daily   (produces warehouse.orders_clean)
               -> Dagster job report_job     (produces marts.revenue)
               -> Prefect deployment report/daily

Each run once, with the partition, and each step starts only when the run before it
has succeeded (Baton follows the run and publishes what its contract produces)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.conftest import Cluster, wait_until
from tests.orchestrators.conftest import Airflow, Dagster, Prefect
from tests.orchestrators.test_airflow import unique_day
from tests.orchestrators.test_dagster import runs_tagged
from tests.orchestrators.test_prefect import runs_with_key

pytestmark = [pytest.mark.orchestrators, pytest.mark.airflow, pytest.mark.dagster,
              pytest.mark.prefect]  # fmt: skip

CHAIN = """
name: clean_{n}
partitioned: daily
when: raw.orders_{n}
trigger: {{target: airflow, dag_id: report_daily, conf: {{day: "{{{{ partition }}}}"}}}}
produces: [warehouse.orders_clean_{n}]
---
name: revenue_{n}
partitioned: daily
when: warehouse.orders_clean_{n}
trigger:
  target: dagster
  job: report_job
  location: dagster_defs.py
  run_config: {{ops: {{build_report: {{config: {{run_date: "{{{{ partition }}}}"}}}}}}}}
produces: [marts.revenue_{n}]
---
name: publish_{n}
partitioned: daily
when: marts.revenue_{n}
trigger:
  target: prefect
  deployment: report/daily
  parameters: {{run_date: "{{{{ partition }}}}"}}
"""


@pytest.mark.timeout(300)  # the three servers' first start plus the 180 s wait below
def test_a_chain_crosses_airflow_dagster_and_prefect_once_each(
    cluster: Cluster, airflow: Airflow, dagster: Dagster, prefect: Prefect
) -> None:
    n, day = uuid.uuid4().hex[:6], unique_day()
    cluster.write_contracts({"chain.yaml": CHAIN.format(n=n)})
    cluster.write_config(
        "http://127.0.0.1:9",
        targets={"airflow": airflow.target(), "dagster": dagster.target(),
                 "prefect": prefect.target()},
        worker={"claim_idle": "1s", "track_initial": "0.5s", "track_max_delay": "1s"},
    )  # fmt: skip
    cluster.run()
    cluster.cli("publish", f"raw.orders_{n}", "--partition", day)

    def records() -> dict[str, dict[str, Any]]:
        rows = json.loads(cluster.cli("triggers", "--json").stdout)
        return {r["contract"]: r for r in rows}

    last = f"publish_{n}"
    done = wait_until(lambda: (r := records()).get(last, {}).get("state") == "succeeded" and r,
                      timeout=180, every=1, seen=records)  # fmt: skip
    airflow_run = airflow.api("GET", f"dags/report_daily/dagRuns/baton:clean_{n}:{day}:0")
    assert airflow_run["state"] == "success" and airflow_run["conf"] == {"day": day}
    dagster_runs = runs_tagged(dagster, f"baton:revenue_{n}:{day}:0")
    assert len(dagster_runs) == 1
    assert dagster_runs[0]["runConfig"] == {"ops": {"build_report": {"config": {"run_date": day}}}}
    prefect_runs = runs_with_key(prefect, f"baton:publish_{n}:{day}:0")
    assert len(prefect_runs) == 1 and prefect_runs[0]["parameters"] == {"run_date": day}
    assert done[f"clean_{n}"]["run_state"] == "succeeded"
    assert done[f"revenue_{n}"]["run_state"] == "succeeded"
    # one trigger per contract: nothing upstream fired twice
    rows = json.loads(cluster.cli("triggers", "--json").stdout)
    assert sorted(r["id"] for r in rows) == sorted(
        f"baton:{c}_{n}:{day}:0" for c in ("clean", "revenue", "publish")
    )
