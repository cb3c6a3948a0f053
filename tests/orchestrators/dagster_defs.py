"""The Dagster side of the adapter tests: loaded by `dagster dev -f dagster_defs.py`.

Runs in Dagster's own venv (not Baton's). A `-f` code location is named after the file
(`dagster_defs.py`) and holds one repository, `__repository__`.

    report_job                 one op that needs `run_date` in its config
    finance/daily_revenue      a daily-partitioned asset (from 2026-01-01)
    finance/revenue_summary    an unpartitioned asset downstream of it
    warehouse/orders_daily     a daily-partitioned asset whose materializations the
                               `baton_publisher` sensor publishes to Baton (BATON_URL)
"""

import dagster as dg

from adapters.publish.dagster import baton_sensor

DAILY = dg.DailyPartitionsDefinition(start_date="2026-01-01")


class ReportConfig(dg.Config):
    run_date: str
    rows: int = 0


@dg.op
def build_report(context: dg.OpExecutionContext, config: ReportConfig) -> str:
    context.log.info(f"report for {config.run_date} over {config.rows} rows")
    return config.run_date


@dg.job(executor_def=dg.in_process_executor)
def report_job() -> None:
    build_report()


@dg.asset(key_prefix="finance", partitions_def=DAILY)
def daily_revenue(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"day": context.partition_key})


@dg.asset(key_prefix="finance", deps=[daily_revenue])
def revenue_summary() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"rows": 1})


def rows_for(day: str) -> int:
    """The row count orders_daily reports for a day: the tests work it out the same way."""
    return int(day.replace("-", "")) % 100_000


@dg.asset(key_prefix="warehouse", partitions_def=DAILY)
def orders_daily(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    day = context.partition_key
    return dg.MaterializeResult(metadata={"dagster/row_count": rows_for(day), "loaded": day})


# The daemon evaluates sensors in rounds 5 s apart; 1 s means "in every round".
baton_publisher = baton_sensor(asset_selection=["warehouse/orders_daily"],
                               minimum_interval_seconds=1)  # fmt: skip

# In-process steps: a run is one subprocess (the default launcher's), done in seconds.
defs = dg.Definitions(
    assets=[daily_revenue, revenue_summary, orders_daily],
    jobs=[report_job],
    sensors=[baton_publisher],
    executor=dg.in_process_executor,
)
