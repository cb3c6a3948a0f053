"""The Prefect side of the adapter tests: flows served as deployments by `flow.serve()`.

Runs in Prefect's own venv (not Baton's), started by `servers.prefect_runner`. The
`load-orders*` flows publish to the Baton that the publishing tests run on
`servers.BATON_PORT` (BATON_URL and BATON_TOKEN are in the runner's environment).
"""

import logging

from prefect import flow, runtime, serve, task

from adapters.publish.prefect import from_result, publish, publish_on_completion

ORDERS = "warehouse.orders_prefect"

# The runs' INFO lines reach the API (the servers run at WARNING): the publishing tests
# read back what the hooks said ("published", "already published").
for _name in ("prefect.flow_runs", "prefect.task_runs"):
    logging.getLogger(_name).setLevel(logging.INFO)


@flow(name="report")
def report(run_date: str, rows: int = 0) -> str:
    return f"report for {run_date} over {rows} rows"


@flow(name="refresh")
def refresh(run_date: str | None = None) -> str:
    return f"refreshed {run_date}"


@flow(
    name="load-orders",
    on_completion=[publish_on_completion(ORDERS, partition="{run_date}", metadata=from_result)],
)
def load_orders(run_date: str, rows: int = 0) -> dict[str, int]:
    return {"row_count": rows}


@flow(
    name="load-orders-retried",
    retries=1,
    retry_delay_seconds=0,
    on_completion=[publish_on_completion(ORDERS, partition="{run_date}", metadata=from_result)],
)
def load_orders_retried(run_date: str, rows: int = 0) -> dict[str, int]:
    """Publishes from its body, then fails its first attempt after publishing: the retry
    and then the completion hook send the very same event again."""
    publish(ORDERS, run_date, metadata={"row_count": rows})
    if runtime.flow_run.run_count == 1:
        raise RuntimeError("the first attempt fails after it has published")
    return {"row_count": rows}


def counted(parameters: dict[str, object], result: object) -> dict[str, object]:
    return {"row_count": result}


@task(
    on_completion=[
        publish_on_completion(ORDERS, partition="{day}", metadata=counted),
        # the task's parameter is `day`: this template names one it does not have
        publish_on_completion("warehouse.never_prefect", partition="{run_date}"),
    ]
)
def extract(day: str) -> int:
    return len(day)


@flow(name="load-orders-tasks")
def load_orders_tasks(run_date: str) -> int:
    return extract(run_date)


if __name__ == "__main__":
    serve(
        report.to_deployment(name="daily"),
        report.to_deployment(name="backfill"),
        refresh.to_deployment(name="nightly"),
        load_orders.to_deployment(name="daily"),
        load_orders_retried.to_deployment(name="daily"),
        load_orders_tasks.to_deployment(name="daily"),
        limit=8,
    )
