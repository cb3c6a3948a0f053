"""Publishing from Dagster: a sensor that announces asset materializations to Baton.

Installed in Dagster's environment (`pip install httpx && pip install --no-deps baton`),
one sensor in a code location follows the instance's event log and sends Baton an event
for every materialization, with no change to the assets themselves:

    import dagster as dg
    from adapters.publish.dagster import baton_sensor

    @dg.asset(key_prefix="warehouse", partitions_def=dg.DailyPartitionsDefinition("2026-01-01"))
    def orders_daily(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        rows = load(context.partition_key)
        return dg.MaterializeResult(metadata={"dagster/row_count": rows})

    defs = dg.Definitions(
        assets=[orders_daily],
        sensors=[baton_sensor(asset_selection=["warehouse/orders_daily"])],
    )   # materializing 2026-11-23 publishes warehouse.orders_daily, partition 2026-11-23

The event: dataset = the asset key joined with "." (or `dataset_for`), partition = the
materialization's partition key, metadata = its metadata as plain JSON (with
`dagster/row_count` also as `row_count`), occurred_at = when it was recorded. Its id is
`dagster/<run id>/<asset key>/<partition>`: reading the same record again (after a crash,
or from a second sensor) is a duplicate to Baton, while a re-execution is a new run, so a
new completion (a restatement). A contract's `produces:` must not name a dataset this
sensor also publishes, or each run would announce it twice under two ids.

The sensor starts after the latest materialization it finds on its first tick; to send
the history as well, set its cursor to 0 (`dagster sensor cursor NAME --set 0`). The
cursor moves over what was delivered or spooled: when Baton is down the events wait in
the spool (`adapters.publish`) with a warning in the tick's log, and a later tick sends
them, as does `python -m adapters.publish flush`. Materializing never waits for Baton
and never fails because of it. A refusal by Baton (a dataset outside the token's scope,
say) fails the tick and holds the cursor, quoting Baton's answer, until the cause is
fixed or the asset left out. Settings come from BATON_URL, BATON_TOKEN, BATON_SPOOL_DIR;
with BATON_REQUIRED=true an outage fails the ticks too (the events are spooled each time).
An event that feeds no contract, or cannot feed one that reads its dataset, is a warning
in the tick's log; with `strict=True` (or BATON_STRICT=true) it fails the tick and holds
the cursor, as a refusal does, though Baton has kept it: the next tick's resend is a
duplicate, and passes once a contract reads it (or the asset is left out).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeAlias

import dagster as dg
from pydantic import ValidationError

from adapters.publish import Outcome, Publisher, stable_event_id
from broker.client import BatonClient, BatonUnavailable
from broker.core.events import Event

DatasetFor: TypeAlias = Callable[[dg.AssetKey], str | None] | Mapping[str, str | None]
Assets: TypeAlias = Sequence[dg.AssetKey | str] | dg.AssetSelection | None

ROW_COUNT = "dagster/row_count"
_SCALARS = (str, int, float, bool)


class BatonRefused(Exception):
    """Baton refused the tick's events; the cursor stays, so they are sent again."""


def baton_sensor(
    *,
    name: str = "baton_publisher",
    asset_selection: Assets = None,
    dataset_for: DatasetFor | None = None,
    minimum_interval_seconds: int = 30,
    publisher: Publisher | None = None,
    batch_size: int = 500,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
    strict: bool | None = None,
) -> dg.SensorDefinition:
    """A sensor that publishes materializations of `asset_selection` (asset keys, "a/b"
    strings or an AssetSelection; None: every asset of the instance) to Baton.

    `dataset_for` names the dataset of an asset key (a function, or a mapping from
    "a/b" keys, the rest keeping the default); None leaves the asset unpublished.
    `publisher` defaults to one built from the environment on each tick (`strict`, when
    given, overriding BATON_STRICT)."""
    watch = _Watch(asset_selection, _naming(dataset_for), publisher, batch_size, strict)

    def evaluate(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        return watch.tick(context)

    return dg.SensorDefinition(
        name=name,
        evaluation_fn=evaluate,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description="Publishes asset materializations to Baton as dataset-completion events",
    )


def default_dataset(key: dg.AssetKey) -> str:
    return ".".join(key.path)


def _naming(dataset_for: DatasetFor | None) -> Callable[[dg.AssetKey], str | None]:
    if dataset_for is None:
        return default_dataset
    if callable(dataset_for):
        return dataset_for
    names = dict(dataset_for)
    return lambda key: names.get(key.to_user_string(), default_dataset(key))


class _Watch:
    """What one sensor follows, and one tick of following it."""

    def __init__(
        self,
        assets: Assets,
        dataset_for: Callable[[dg.AssetKey], str | None],
        publisher: Publisher | None,
        batch_size: int,
        strict: bool | None = None,
    ) -> None:
        self.assets = assets
        self.dataset_for = dataset_for
        self.publisher = publisher
        self.batch_size = batch_size
        self.strict = strict

    def tick(self, context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        keys = self._keys(context)
        if context.cursor is None:
            start = _latest(context.instance, keys)
            reason = f"following materializations recorded after storage id {start}"
            return dg.SensorResult(skip_reason=reason, cursor=str(start))
        records = _records_after(context.instance, keys, int(context.cursor), self.batch_size)
        publisher = self.publisher or Publisher(strict=self.strict)
        if not records:
            return dg.SkipReason(_flush(publisher) or "no new materializations")
        events = [e for r in records if (e := self._event(r, publisher, context.log))]
        reason = _publish(publisher, events, context.log) if events else "nothing to publish"
        return dg.SensorResult(skip_reason=reason, cursor=str(records[-1].storage_id))

    def _keys(self, context: dg.SensorEvaluationContext) -> list[dg.AssetKey] | None:
        if self.assets is None:
            return None
        if isinstance(self.assets, dg.AssetSelection):
            return sorted(self.assets.resolve(context.repository_def.asset_graph))
        return [dg.AssetKey.from_user_string(k) if isinstance(k, str) else k for k in self.assets]

    def _event(
        self, record: dg.EventLogRecord, publisher: Publisher, log: logging.Logger
    ) -> Event | None:
        key = record.asset_materialization.asset_key
        dataset = self.dataset_for(key)
        if dataset is None:
            return None
        what = f"{key.to_user_string()} (storage id {record.storage_id})"
        try:
            return _build(record, dataset, publisher, full=True)
        except ValidationError as full:
            try:
                event = _build(record, dataset, publisher, full=False)
            except ValidationError as exc:
                log.error(f"{what} is not published: Baton would refuse it: {_why(exc)}")
                return None
            log.warning(f"{what} is published without its larger metadata: {_why(full)}")
            return event


def _why(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())


def _latest(instance: dg.DagsterInstance, keys: list[dg.AssetKey] | None) -> int:
    if keys == []:
        return 0
    ids = [r.asset_entry.last_materialization_storage_id for r in instance.get_asset_records(keys)]
    return max((i for i in ids if i is not None), default=0)


def _records_after(
    instance: dg.DagsterInstance, keys: list[dg.AssetKey] | None, after: int, limit: int
) -> list[dg.EventLogRecord]:
    """The first `limit` materializations after storage id `after`, oldest first.

    Dagster reads materializations one asset at a time, so the asset records (their
    latest storage id) pick the assets worth reading first."""
    if keys == []:
        return []
    fresh = [
        r.asset_entry.asset_key
        for r in instance.get_asset_records(keys)
        if (r.asset_entry.last_materialization_storage_id or 0) > after
    ]
    found: list[dg.EventLogRecord] = []
    for key in fresh:
        since = dg.AssetRecordsFilter(asset_key=key, after_storage_id=after)
        found += instance.fetch_materializations(since, limit=limit, ascending=True).records
    return sorted(found, key=lambda r: r.storage_id)[:limit]


def _build(record: dg.EventLogRecord, dataset: str, publisher: Publisher, *, full: bool) -> Event:
    materialization = record.asset_materialization
    key, partition = materialization.asset_key, materialization.partition
    metadata = plain_metadata(materialization.metadata)
    if not full:
        metadata = {k: v for k, v in metadata.items() if _small(v)}
    # A runless materialization (reported from outside a run) has no run id of its own.
    work = record.run_id or f"event-{record.storage_id}"
    event = publisher.event(
        dataset, partition, metadata=metadata,
        event_id=stable_event_id("dagster", work, "/".join(key.path), partition),
    )  # fmt: skip
    return Event.model_validate(
        event.model_dump()
        | {
            "occurred_at": datetime.fromtimestamp(record.timestamp, UTC),
            "producer": publisher.producer or f"dagster://{key.to_user_string()}",
        }
    )


def plain_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Dagster metadata as plain JSON values; `dagster/row_count` also as `row_count`."""
    plain = {key: _plain(value) for key, value in metadata.items()}
    if ROW_COUNT in plain:
        plain.setdefault("row_count", plain[ROW_COUNT])
    return plain


def _plain(value: Any) -> Any:
    raw = value.value if isinstance(value, dg.MetadataValue) else value
    if isinstance(raw, float) and not math.isfinite(raw):
        return str(raw)  # JSON has no NaN or infinity
    if raw is None or isinstance(raw, (*_SCALARS, dict, list)):
        return raw
    if isinstance(raw, dg.AssetKey):
        return raw.to_user_string()
    return str(raw)  # tables, schemas, code references: their text


def _small(value: Any) -> bool:
    return value is None or (isinstance(value, _SCALARS) and len(str(value)) <= 1024)


def _publish(publisher: Publisher, events: list[Event], log: logging.Logger) -> str:
    """Deliver or spool `events`; a refusal (strict: an event that goes nowhere, as
    Unrouted) raises, so the tick fails and the cursor stays."""
    outcome = publisher.publish(events)
    if outcome.refused:
        raise BatonRefused(
            f"Baton at {publisher.url} refused {len(events)} event(s): {outcome.refused}. "
            "Fix the cause (the token's datasets, say) or leave the asset out with "
            "asset_selection/dataset_for; the events are sent again on every tick."
        )
    if outcome.spooled:
        log.warning(
            f"Baton at {publisher.url} is unavailable: {len(outcome.spooled)} event(s) "
            f"wait in {publisher.spool.folder} and are sent by a later tick"
        )
    if outcome.unrouted:
        log.warning(f"Baton accepted the events, but: {'; '.join(outcome.unrouted)}")
    return _summary(outcome)


def _flush(publisher: Publisher) -> str:
    """Send what waits in the spool; a tick with nothing new is the chance to."""
    waiting = len(publisher.spool.files())
    if not waiting:
        return ""
    client = BatonClient(
        publisher.url, token=publisher.token, attempts=publisher.attempts,
        timeout=publisher.timeout,
    )  # fmt: skip
    try:
        return f"sent {publisher.spool.flush(client)} spooled event(s) to Baton"
    except BatonUnavailable as exc:
        return f"{waiting} spooled file(s) wait for Baton at {publisher.url}: {exc}"
    finally:
        client.close()


def _summary(outcome: Outcome) -> str:
    parts = [f"{len(outcome.accepted)} accepted", f"{len(outcome.duplicates)} duplicate(s)"]
    if outcome.spooled:
        parts.append(f"{len(outcome.spooled)} spooled (Baton unavailable)")
    if outcome.flushed:
        parts.append(f"{outcome.flushed} sent from the spool")
    return "published to Baton: " + ", ".join(parts)
