"""An example Dagster code location that publishes its materializations to Baton.

    pip install dagster dagster-webserver httpx && pip install --no-deps baton
    BATON_URL=http://127.0.0.1:8000 BATON_TOKEN=... dagster dev -f examples/dagster/definitions.py

Materialize `warehouse/orders_daily` for 2026-11-23 and Baton receives
`{"dataset": "warehouse.orders_daily", "partition": "2026-11-23",
"metadata": {"dagster/row_count": ..., "row_count": ...}}` within a sensor round (~5 s);
a contract `when: warehouse.orders_daily` then starts its downstream run. `raw/fx_rates`
is published as `warehouse.fx_rates` (a mapped name), and `scratch/tmp` not at all.
"""

import dagster as dg

from adapters.publish.dagster import baton_sensor

DAILY = dg.DailyPartitionsDefinition(start_date="2026-01-01")


@dg.asset(key_prefix="warehouse", partitions_def=DAILY)
def orders_daily(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    rows = 1000 + int(context.partition_key[-2:])  # stands in for the real load
    return dg.MaterializeResult(metadata={"dagster/row_count": rows})


@dg.asset(key_prefix="raw", partitions_def=DAILY)
def fx_rates() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"currencies": 170})


@dg.asset(key_prefix="scratch")
def tmp() -> None:
    return None


defs = dg.Definitions(
    assets=[orders_daily, fx_rates, tmp],
    sensors=[
        baton_sensor(
            asset_selection=["warehouse/orders_daily", "raw/fx_rates"],
            dataset_for={"raw/fx_rates": "warehouse.fx_rates"},
            minimum_interval_seconds=5,
        )
    ],
)
