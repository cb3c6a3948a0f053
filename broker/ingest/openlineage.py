"""OpenLineage RunEvents in, dataset-completion events out (`POST /v1/openlineage`).

Any tool with an OpenLineage integration (Airflow's provider, dbt, Spark, ...) can
publish to Baton with no code. Each output dataset of a run event becomes one event:

    COMPLETE           -> status success
    FAIL, ABORT        -> status failed
    START, RUNNING, OTHER -> ignored (nothing has finished)

The dataset name is `namespace/name`, unless `openlineage.datasets` maps it (either the
full `namespace/name` or the bare `name`) to a Baton dataset. The partition comes from
the first rule in `openlineage.partition_from` that yields one:

    facet         an output dataset facet (`openlineage.partition_facet`, default
                  "partition") holding `{"key": "..."}` or a plain string
    nominal_time  the run's nominalTime facet, as a key of `nominal_granularity`
    name          `openlineage.name_pattern`, a regex over the dataset name with a
                  `(?P<partition>...)` group (e.g. `.*/dt=(?P<partition>[0-9-]+)`)

The event id is made from the run id, the event type and the dataset, so a tool that
sends the same run event twice publishes once. Row counts in the outputStatistics
facet become `metadata.row_count`.

Every value read is checked for its type (`eventType: {}`, `facets: [1]`, `rowCount:
true` are refused, naming the field); what is not read is not looked at, since
producers put many facets of their own in run events.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from broker.core.errors import EventRejected
from broker.core.events import Event
from broker.core.partitions import Calendar, Granularity, PartitionError
from broker.core.settings import OpenLineageSettings
from broker.core.strict_json import shown

_FINISHED = {"COMPLETE": "success", "FAIL": "failed", "ABORT": "failed"}
_KNOWN_TYPES = ("START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER")
Problems = list[tuple[str, str]]


def translate(body: Any, config: OpenLineageSettings) -> tuple[list[Event], int]:
    """The Baton events in a RunEvent (or a list of them), and how many run events
    were ignored because nothing finished; EventRejected names each bad field."""
    run_events = body if isinstance(body, list) else [body]
    errors: Problems = []
    events: list[Event] = []
    ignored = 0
    for i, item in enumerate(run_events):
        where = f"[{i}]." if isinstance(body, list) else ""
        try:
            found = _one(item, config, where)
        except EventRejected as exc:
            errors += exc.errors
            continue
        if found is None:
            ignored += 1
        else:
            events += found
    if errors:
        raise EventRejected(errors)
    return events, ignored


class _Reader:
    """Typed values out of a run event: a misfit is a problem naming its field, and
    reads as None, so that one answer names every misfit it can."""

    def __init__(self) -> None:
        self.problems: Problems = []

    def get(self, obj: Any, key: str, kind: type, where: str, required: bool = False) -> Any:
        value = obj.get(key) if isinstance(obj, dict) else None
        if value is None:
            if required:
                self.problems.append((f"{where}{key}", f"required, {_NAMES[kind]}"))
            return None
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.problems.append((f"{where}{key}", f"expected {_NAMES[kind]}, got {_name(value)}"))
            return None
        return value

    def check(self) -> None:
        if self.problems:
            raise EventRejected(self.problems)


_NAMES: dict[type, str] = {str: "a string", int: "an integer", dict: "an object", list: "a list"}


def _name(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return {str: "a string", int: "a number", float: "a number", dict: "an object",
            list: "a list"}.get(type(value), type(value).__name__)  # fmt: skip


def _one(item: Any, config: OpenLineageSettings, where: str) -> list[Event] | None:
    if not isinstance(item, dict):
        raise EventRejected([(where.rstrip(".") or "body", "expected an object")])
    read = _Reader()
    kind = read.get(item, "eventType", str, where, required=True)
    read.check()
    if kind not in _KNOWN_TYPES:
        raise EventRejected([(f"{where}eventType", f"expected one of {', '.join(_KNOWN_TYPES)}, "
                                                   f"got {shown(repr(kind))}")])  # fmt: skip
    if kind not in _FINISHED:
        return None
    run = read.get(item, "run", dict, where, required=True)
    read.get(run, "runId", str, f"{where}run.", required=True)
    job = read.get(item, "job", dict, where, required=True)
    read.get(job, "name", str, f"{where}job.", required=True)
    read.get(job, "namespace", str, f"{where}job.")
    read.get(item, "producer", str, where)
    read.get(item, "eventTime", str, where)
    outputs = read.get(item, "outputs", list, where) or []
    read.check()
    return _each_output(item, outputs, config, where)


def _each_output(
    item: dict[str, Any], outputs: list[Any], config: OpenLineageSettings, where: str
) -> list[Event]:
    """One event per output; EventRejected names what is wrong in any of them."""
    events, errors = [], []
    for n, output in enumerate(outputs):
        try:
            events.append(_event(item, output, config, where, f"{where}outputs[{n}]"))
        except EventRejected as exc:
            errors += exc.errors
    if errors:
        raise EventRejected(errors)
    return events


def _event(
    item: dict[str, Any], output: Any, config: OpenLineageSettings, top: str, out: str
) -> Event:
    if not isinstance(output, dict):
        raise EventRejected([(out, f"expected an object, got {_name(output)}")])
    read = _Reader()
    name = read.get(output, "name", str, f"{out}.", required=True)
    namespace = read.get(output, "namespace", str, f"{out}.") or ""
    facets = read.get(output, "outputFacets", dict, f"{out}.")
    stats = read.get(facets, "outputStatistics", dict, f"{out}.outputFacets.")
    rows = read.get(stats, "rowCount", int, f"{out}.outputFacets.outputStatistics.")
    read.check()
    full = f"{namespace}/{name}" if namespace else name
    partition, from_field = _partition(item["run"], output, name, config, top, out)
    fields = {
        "dataset": config.datasets.get(full) or config.datasets.get(name) or full,
        "partition": partition,
        "status": _FINISHED[item["eventType"]],
        "event_id": f"ol/{item['run']['runId']}/{item['eventType']}/{full}",
        "producer": (item.get("producer") or "openlineage")[:256],
        "occurred_at": item.get("eventTime"),
        "metadata": _metadata(item, rows),
    }
    try:
        return Event.model_validate(fields)
    except ValidationError as exc:  # name the field of the run event that made it invalid
        sent_as = {**_sent_as(top, out), "partition": from_field}
        raise EventRejected(
            [(sent_as.get(str(next(iter(e["loc"]), "")), out), e["msg"]) for e in exc.errors()]
        ) from exc


def _metadata(item: dict[str, Any], rows: int | None) -> dict[str, Any]:
    job = item["job"]
    lineage = {"job": f"{job.get('namespace') or ''}/{job['name']}", "run_id": item["run"]["runId"]}
    return {"openlineage": lineage} | ({} if rows is None else {"row_count": rows})


def _sent_as(top: str, out: str) -> dict[str, str]:
    """Where in the run event each field of the Baton event comes from."""
    return {"dataset": f"{out}.name", "event_id": f"{top}run.runId",
            "producer": f"{top}producer", "occurred_at": f"{top}eventTime"}  # fmt: skip


def _partition(
    run: dict[str, Any],
    output: dict[str, Any],
    name: str,
    config: OpenLineageSettings,
    top: str,
    out: str,
) -> tuple[str | None, str]:
    """The partition by the first rule of `partition_from` that yields one, and the
    field it came from."""
    read = _Reader()
    for rule in config.partition_from:
        if rule == "facet":
            found = _from_facet(read, output, config.partition_facet, f"{out}.facets.")
        elif rule == "nominal_time":
            found = _from_nominal_time(read, run, config, f"{top}run.facets.")
        else:
            found = _from_name(name, config, f"{out}.name")
        read.check()
        if found is not None:
            return found
    return None, out


def _from_facet(
    read: _Reader, output: dict[str, Any], facet: str, where: str
) -> tuple[str, str] | None:
    """`{"key": "..."}` or a plain string, in the output's partition facet."""
    facets = read.get(output, "facets", dict, where.removesuffix("facets."))
    value = facets.get(facet) if facets else None
    if isinstance(value, str):
        return (value, f"{where}{facet}") if value else None
    if value is not None and not isinstance(value, dict):
        read.problems.append(
            (f"{where}{facet}", f"expected an object or a string, got {_name(value)}")
        )
        return None
    key = read.get(value, "key", str, f"{where}{facet}.")
    return (key, f"{where}{facet}.key") if key else None


def _from_nominal_time(
    read: _Reader, run: dict[str, Any], config: OpenLineageSettings, where: str
) -> tuple[str, str] | None:
    facets = read.get(run, "facets", dict, where.removesuffix("facets."))
    nominal = read.get(facets, "nominalTime", dict, where)
    start = read.get(nominal, "nominalStartTime", str, f"{where}nominalTime.")
    if start is None:
        return None
    field = f"{where}nominalTime.nominalStartTime"
    try:
        when = datetime.fromisoformat(start.replace("Z", "+00:00"))
        if when.tzinfo is None:
            raise ValueError("no timezone")
        key = Calendar(Granularity(config.nominal_granularity), "UTC").key_of(when)
    except (ValueError, PartitionError) as exc:
        read.problems.append((field, f"expected an ISO 8601 time with a timezone: {exc}"))
        return None
    return key, field


def _from_name(name: str, config: OpenLineageSettings, field: str) -> tuple[str, str] | None:
    if not config.name_pattern:
        return None
    match = re.search(config.name_pattern, name)
    if match and match.groupdict().get("partition"):
        return match.group("partition"), field
    return None
