"""Upstream DAGs that publish to Baton through its Airflow plugin and helper.

Runs in Airflow's own venv, where the tests install Baton as users would
(`pip install httpx && pip install --no-deps baton`); the scheduler's environment
names the Baton to publish to (BATON_URL, BATON_TOKEN, BATON_SPOOL_DIR).

    load_orders_partitioned   partitioned at runtime; its outlet carries a row count
    load_orders_daily         @daily (the scheduler also makes its latest run, unasked)
    load_orders_helper        publishes with the helper, fails once and is retried
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Asset, PartitionedAtRuntime, get_current_context, task

from adapters.publish.airflow import publish

ORDERS_PARTITIONED = Asset("warehouse.orders_airflow_partitioned")
ORDERS_DAILY = Asset("warehouse.orders_airflow_daily")

with DAG(
    "load_orders_partitioned",
    schedule=PartitionedAtRuntime(),
    start_date=pendulum.datetime(2000, 1, 1),
    catchup=False,
    is_paused_upon_creation=False,
    max_active_runs=16,
):

    @task(outlets=[ORDERS_PARTITIONED])
    def load(*, outlet_events: dict[Asset, object]) -> None:
        outlet_events[ORDERS_PARTITIONED].extra = {"row_count": 42}  # type: ignore[attr-defined]

    load()

with DAG(
    "load_orders_daily",
    schedule="@daily",
    start_date=pendulum.datetime(2000, 1, 1),
    catchup=False,
    is_paused_upon_creation=False,
    max_active_runs=16,
):

    @task(outlets=[ORDERS_DAILY])
    def load_daily() -> None:
        return None

    load_daily()

with DAG(
    "load_orders_helper",
    schedule=None,
    start_date=pendulum.datetime(2000, 1, 1),
    catchup=False,
    is_paused_upon_creation=False,
    max_active_runs=16,
):

    @task(retries=1, retry_delay=timedelta(seconds=1))
    def load_with_helper() -> None:
        context = get_current_context()
        day = context["dag_run"].conf["day"]
        publish("warehouse.orders_airflow_helper", partition=day,
                metadata={"row_count": 7}, required=True)  # fmt: skip
        if context["ti"].try_number == 1:
            raise RuntimeError("fails after publishing, to be retried")

    load_with_helper()
