"""Publishing from Airflow 3: a listener plugin that needs no DAG changes, and a helper.

Installed in Airflow's environment (`pip install httpx && pip install --no-deps baton`),
the `baton` plugin (entry point `airflow.plugins`) announces every outlet Asset of every
successful task to Baton:

    @task(outlets=[Asset("warehouse.orders")])
    def load_orders(): ...                        # done -> event "warehouse.orders"

Metadata rides on Airflow's own outlet events, so the task code stays plain Airflow:

    @task(outlets=[orders])
    def load_orders(*, outlet_events):
        outlet_events[orders].extra = {"row_count": 12345}

A task that wants to publish by itself (another dataset, at a point of its choosing, or
failing when Baton cannot be reached, or when its event feeds no contract) calls the
helper:

    from adapters.publish.airflow import publish
    publish("warehouse.orders", metadata={"row_count": n}, required=True, strict=True)

The partition is the run's `partition_key` (Airflow >= 3.2, and keys added with
`outlet_events[asset].add_partitions`), else the data interval's start written at the
interval's grain: one hour `2026-11-23T05`, one day `2026-11-23`, one week `2026-W48`,
one month `2026-11`, in UTC or the timezone `BATON_PARTITION_TZ` names (the contracts'
`timezone`); `BATON_PARTITION_FORMAT`, a strftime pattern, overrides the grain.
A run with no data interval (a manual run without a logical date) publishes no partition.

The event id is `airflow/<dag>/<run>/<task>[/<map index>]/<dataset>[/<partition>]`: a
retried or cleared task sends the same id, which Baton keeps as a duplicate, so only a
new DAG run announces new data. The listener runs after the task has succeeded, so it
can never fail it: when Baton is down the events wait in the spool (`adapters.publish`),
and an event that goes nowhere is a warning in the task's log, BATON_STRICT or not.
Settings come from BATON_URL, BATON_TOKEN, BATON_SPOOL_DIR, BATON_REQUIRED and
BATON_STRICT (the helper's).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import Asset, get_current_context

from adapters.publish import Outcome, Publisher, stable_event_id
from broker.core.events import Event

log = logging.getLogger("baton.publish.airflow")


def partition_of(context: Mapping[str, Any]) -> str | None:
    """The partition a run works on, as Baton writes it (see the module docstring)."""
    key = context.get("partition_key")
    if key:
        return str(key)
    start = context.get("data_interval_start") or context.get("logical_date")
    if start is None:
        return None
    zone = ZoneInfo(os.environ.get("BATON_PARTITION_TZ") or "UTC")
    start, end = start.astimezone(zone), context.get("data_interval_end")
    pattern = os.environ.get("BATON_PARTITION_FORMAT")
    if pattern:
        return str(start.strftime(pattern))
    return _at_grain(start, end.astimezone(zone) if end is not None else None)


def _at_grain(start: datetime, end: datetime | None) -> str:
    span = (end - start) if end is not None else timedelta(0)
    if span == timedelta(hours=1):
        return start.strftime("%Y-%m-%dT%H")
    if span == timedelta(weeks=1) and start.isoweekday() == 1:
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}"
    if timedelta(days=28) <= span <= timedelta(days=31) and start.day == 1:
        return start.strftime("%Y-%m")
    return start.strftime("%Y-%m-%d")


def _identity(context: Mapping[str, Any]) -> tuple[Any, ...]:
    ti = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    return ("airflow", ti.dag_id, ti.run_id, ti.task_id,
            map_index if map_index is not None and map_index >= 0 else None)  # fmt: skip


def _producer(context: Mapping[str, Any]) -> str:
    ti = context["ti"]
    return f"airflow://{ti.dag_id}/{ti.task_id}"


def outlet_events(context: Mapping[str, Any]) -> list[Event]:
    """One event per outlet Asset of the task (per partition key added to it)."""
    task, identity = context["ti"].task, _identity(context)
    publisher = Publisher(producer=_producer(context))
    accessors = context.get("outlet_events")
    events = []
    for outlet in getattr(task, "outlets", None) or []:
        if not isinstance(outlet, Asset):
            continue  # aliases and references name no dataset of their own
        extra, keys = _outlet_extra(accessors, outlet)
        partitions: list[str | None] = [*sorted(keys)] or [partition_of(context)]
        for partition in partitions:
            events.append(
                publisher.event(outlet.name, partition, metadata=extra,
                                event_id=stable_event_id(*identity, outlet.name, partition))
            )  # fmt: skip
    return events


def _outlet_extra(accessors: Any, asset: Asset) -> tuple[dict[str, Any], set[str]]:
    if accessors is None:
        return {}, set()
    try:
        event = accessors[asset]
    except (KeyError, TypeError, ValueError):
        return {}, set()
    return dict(getattr(event, "extra", {}) or {}), set(getattr(event, "partition_keys", ()) or ())


def publish(
    dataset: str | Iterable[str] | None = None,
    *,
    partition: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    status: str = "success",
    required: bool | None = None,
    strict: bool | None = None,
    publisher: Publisher | None = None,
) -> Outcome:
    """Publish from inside a running task: `dataset` (default: the task's outlets) for
    the run's partition (or `partition`), with `metadata`.

    The ids are the ones the listener uses, so publishing an outlet here and again when
    the task succeeds announces it once. `required=True` fails the task when Baton
    cannot be reached (the events stay in the spool all the same); `strict=True` when
    an event feeds no contract, or cannot feed one reading its dataset (Baton keeps it)."""
    context = get_current_context()
    publisher = publisher or Publisher(
        required=required, strict=strict, producer=_producer(context)
    )
    if dataset is None:
        events = outlet_events(context)
        if metadata:
            events = [e.model_copy(update={"metadata": {**e.metadata, **metadata}}) for e in events]
    else:
        names = [dataset] if isinstance(dataset, str) else list(dataset)
        part = partition if partition is not None else partition_of(context)
        identity = _identity(context)
        events = [
            publisher.event(name, part, status=status, metadata=metadata,
                            event_id=stable_event_id(*identity, name, part))
            for name in names
        ]  # fmt: skip
    return publisher.publish(events)


class BatonListener:
    """Publishes a successful task's outlets; hooked into Airflow by `BatonPlugin`."""

    @hookimpl  # type: ignore[untyped-decorator]
    def on_task_instance_success(self, previous_state: Any, task_instance: Any) -> None:
        if not hasattr(task_instance, "get_template_context"):
            return  # marked successful through the API: no task ran, no data was made
        try:
            context = task_instance.get_template_context()
            events = outlet_events(context)
            if events:  # never strict: nothing here may fail the task, so it warns
                Publisher(producer=_producer(context), strict=False).publish(events)
        except Exception:  # a listener must never break the task runner
            log.exception("Baton: could not publish the outlets of %s", task_instance.task_id)


class BatonPlugin(AirflowPlugin):  # type: ignore[misc]
    name = "baton"
    listeners = [BatonListener()]  # noqa: RUF012  (Airflow reads it as a class attribute)
