"""DAGs for the adapter tests; parsed by the Airflow 3 server the tests start.

Runs in Airflow's own venv, not Baton's.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Asset, PartitionedAssetTimetable, PartitionedAtRuntime, task

REVENUE = Asset("baton://warehouse/revenue")

with DAG(
    "report_daily",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1),
    catchup=False,
    is_paused_upon_creation=False,
    max_active_runs=16,
):

    @task
    def build(**context: object) -> dict[str, object]:
        run = context["dag_run"]
        return {"conf": run.conf, "partition_key": getattr(run, "partition_key", None)}

    build()

with DAG(
    "report_paused",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1),
    catchup=False,
    is_paused_upon_creation=True,
):

    @task
    def nothing() -> None:
        return None

    nothing()

with DAG(
    "revenue_consumer",
    schedule=[REVENUE],
    start_date=pendulum.datetime(2026, 1, 1),
    catchup=False,
    is_paused_upon_creation=False,
):

    @task
    def consume() -> None:
        return None

    consume()

with DAG(
    "report_partitioned",
    schedule=PartitionedAtRuntime(),
    start_date=pendulum.datetime(2026, 1, 1),
    catchup=False,
    is_paused_upon_creation=False,
):

    @task
    def build_partition() -> None:
        return None

    build_partition()

with DAG(
    "revenue_partitioned_consumer",
    schedule=PartitionedAssetTimetable(assets=REVENUE),
    start_date=pendulum.datetime(2026, 1, 1),
    catchup=False,
    is_paused_upon_creation=False,
):

    @task
    def consume_partition() -> None:
        return None

    consume_partition()

with DAG(
    "report_slow",
    schedule=None,
    start_date=pendulum.datetime(1990, 1, 1),
    catchup=False,
    is_paused_upon_creation=False,
    max_active_runs=64,
):

    @task
    def build_slowly() -> None:
        """A run that takes a few seconds, so runs in flight can be counted."""
        import time  # noqa: PLC0415

        time.sleep(3)

    build_slowly()
