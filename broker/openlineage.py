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
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from broker.errors import EventRejected
from broker.events import Event
from broker.partitions import Calendar, Granularity
from broker.settings import OpenLineageSettings

_FINISHED = {"COMPLETE": "success", "FAIL": "failed", "ABORT": "failed"}
_KNOWN_TYPES = {"START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"}


def translate(body: Any, config: OpenLineageSettings) -> tuple[list[Event], int]:
    """The Baton events in a RunEvent (or a list of them), and how many run events
    were ignored because nothing finished; EventRejected names each bad field."""
    run_events = body if isinstance(body, list) else [body]
    errors: list[tuple[str, str]] = []
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


def _one(item: Any, config: OpenLineageSettings, where: str) -> list[Event] | None:
    if not isinstance(item, dict):
        raise EventRejected([(where.rstrip(".") or "body", "expected an object")])
    kind = item.get("eventType")
    if kind not in _KNOWN_TYPES:
        expected = f"expected one of {sorted(_KNOWN_TYPES)}, got {kind!r}"
        raise EventRejected([(f"{where}eventType", expected)])
    if kind not in _FINISHED:
        return None
    run, job = item.get("run"), item.get("job")
    problems = []
    if not isinstance(run, dict) or not isinstance(run.get("runId"), str):
        problems.append((f"{where}run.runId", "required, a string"))
    if not isinstance(job, dict) or not isinstance(job.get("name"), str):
        problems.append((f"{where}job.name", "required, a string"))
    outputs = item.get("outputs", [])
    if not isinstance(outputs, list):
        problems.append((f"{where}outputs", "expected a list"))
    if problems:
        raise EventRejected(problems)
    assert isinstance(run, dict) and isinstance(job, dict)
    return [
        _event(item, run, job, output, config, f"{where}outputs[{n}]")
        for n, output in enumerate(outputs)
    ]


def _event(
    item: dict[str, Any],
    run: dict[str, Any],
    job: dict[str, Any],
    output: Any,
    config: OpenLineageSettings,
    where: str,
) -> Event:
    if not isinstance(output, dict) or not isinstance(output.get("name"), str):
        raise EventRejected([(f"{where}.name", "required, a string")])
    namespace, name = str(output.get("namespace", "")), output["name"]
    full = f"{namespace}/{name}" if namespace else name
    dataset = config.datasets.get(full) or config.datasets.get(name) or full
    metadata: dict[str, Any] = {
        "openlineage": {"job": f"{job.get('namespace', '')}/{job['name']}", "run_id": run["runId"]}
    }
    stats = (output.get("outputFacets") or {}).get("outputStatistics") or {}
    if isinstance(stats.get("rowCount"), int):
        metadata["row_count"] = stats["rowCount"]
    fields = {
        "dataset": dataset,
        "partition": _partition(run, output, name, config),
        "status": _FINISHED[item["eventType"]],
        "event_id": f"ol/{run['runId']}/{item['eventType']}/{full}",
        "producer": str(item.get("producer", "openlineage"))[:256],
        "occurred_at": item.get("eventTime"),
        "metadata": metadata,
    }
    try:
        return Event.model_validate(fields)
    except ValidationError as exc:  # name what the run event's output made invalid
        raise EventRejected(
            [(f"{where} -> {'.'.join(map(str, e['loc']))}", e["msg"]) for e in exc.errors()]
        ) from exc


def _partition(
    run: dict[str, Any], output: dict[str, Any], name: str, config: OpenLineageSettings
) -> str | None:
    for rule in config.partition_from:
        if rule == "facet":
            facet = (output.get("facets") or {}).get(config.partition_facet)
            key = facet.get("key") if isinstance(facet, dict) else facet
            if isinstance(key, str) and key:
                return key
        elif rule == "nominal_time":
            nominal = ((run.get("facets") or {}).get("nominalTime") or {}).get("nominalStartTime")
            if isinstance(nominal, str):
                when = datetime.fromisoformat(nominal.replace("Z", "+00:00"))
                return Calendar(Granularity(config.nominal_granularity), "UTC").key_of(when)
        elif rule == "name" and config.name_pattern:
            match = re.search(config.name_pattern, name)
            if match and match.groupdict().get("partition"):
                return match.group("partition")
    return None
