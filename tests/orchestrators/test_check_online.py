"""`baton check --online` against real Airflow and Prefect servers."""

from __future__ import annotations

import pytest

from tests.conftest import Cluster
from tests.orchestrators.conftest import Airflow, Prefect

pytestmark = [pytest.mark.orchestrators, pytest.mark.airflow, pytest.mark.prefect]

GOOD = """
name: good_airflow
partitioned: daily
when: warehouse.orders
trigger: {target: airflow, dag_id: report_daily, conf: {day: "{{ partition }}"}}
---
name: good_prefect
partitioned: daily
when: warehouse.orders
trigger:
  target: prefect
  deployment: report/daily
  parameters: {run_date: "{{ partition }}", rows: "{{ inputs['warehouse.orders'].metadata.rows }}"}
"""

BAD = """
name: missing_dag
partitioned: daily
when: warehouse.orders
trigger: {target: airflow, dag_id: no_such_dag}
---
name: wrong_parameters
partitioned: daily
when: warehouse.orders
trigger:
  target: prefect
  deployment: report/daily
  parameters: {colour: red}
"""


def configure(cluster: Cluster, airflow: Airflow, prefect: Prefect, files: dict[str, str]) -> None:
    cluster.write_contracts(files)
    targets = {"airflow": airflow.target(), "prefect": prefect.target()}
    cluster.write_config("http://127.0.0.1:9", targets=targets)


def test_good_triggers_pass_and_metadata_fields_are_noted(
    cluster: Cluster, airflow: Airflow, prefect: Prefect
) -> None:
    configure(cluster, airflow, prefect, {"good.yaml": GOOD})
    result = cluster.cli("check", "--online")
    assert "2 contracts OK against the live targets" in result.stdout
    assert "good_prefect: trigger.parameters.rows reads event data; checked as null" in (
        result.stderr
    )


def test_each_problem_names_the_file_line_and_what_the_target_said(
    cluster: Cluster, airflow: Airflow, prefect: Prefect
) -> None:
    configure(cluster, airflow, prefect, {"bad.yaml": BAD})
    result = cluster.cli("check", "--online", check=False)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert any(
        line.startswith(f"{cluster.root}/contracts/bad.yaml:5:")
        and "missing_dag: airflow airflow: DAG 'no_such_dag' not found" in line
        for line in lines
    ), lines
    assert any("wrong_parameters: prefect prefect: deployment 'report/daily' takes no "
               "parameter 'colour'" in line for line in lines), lines  # fmt: skip
    assert any("needs parameter 'run_date'" in line for line in lines), lines
