"""The Prefect side of the adapter tests: flows served as deployments by `flow.serve()`.

Runs in Prefect's own venv (not Baton's), started by `servers.prefect_runner`.
"""

from prefect import flow, serve


@flow(name="report")
def report(run_date: str, rows: int = 0) -> str:
    return f"report for {run_date} over {rows} rows"


@flow(name="refresh")
def refresh(run_date: str | None = None) -> str:
    return f"refreshed {run_date}"


if __name__ == "__main__":
    serve(
        report.to_deployment(name="daily"),
        report.to_deployment(name="backfill"),
        refresh.to_deployment(name="nightly"),
        limit=8,
    )
