"""Publishing from Prefect 3: state hooks that announce a flow's (or a task's) dataset.

Installed in Prefect's environment (`pip install httpx && pip install --no-deps baton`):

    from prefect import flow
    from adapters.publish.prefect import from_result, publish_on_completion

    @flow(on_completion=[publish_on_completion("warehouse.orders", partition="{run_date}",
                                               metadata=from_result)])
    def load_orders(run_date: str) -> dict[str, int]:
        ...
        return {"row_count": 12345}      # with `from_result`: the event's metadata

`dataset` and `partition` are templates filled from the run's parameters (`"{run_date}"`,
`"{day:%Y-%m}"` for a `date` parameter) or functions of the parameters dict. `metadata`
is a mapping, `from_result`, or a function of (parameters, result). The same hook goes
on a task (`@task(on_completion=[...])`), filled from the task's parameters.

The event id is `prefect/<flow run id>/<dataset>[/<partition>]` (a task outside any flow
uses its task run id). Prefect keeps a flow run's id through its retries, so a retried
flow, or a task that runs again in it, sends the same id, which Baton keeps as a
duplicate: only a new flow run announces new data. `publish_on_failure` sends a
`failed` event when the run fails for good, after its retries.

A hook runs after Prefect has recorded the run's final state, so nothing in it can fail
the run: when Baton is down the event waits in the spool (`adapters.publish`) and a
warning goes to the run's log; a template naming a missing parameter is logged as an
error and nothing is published; an event that feeds no contract, or cannot feed one
that reads its dataset, is a warning (an error with BATON_STRICT=true). A flow that must
fail when its event cannot be delivered, or goes nowhere, calls `publish(...,
required=True, strict=True)` at the end of its body instead; it uses the same id.
Settings come from BATON_URL, BATON_TOKEN, BATON_SPOOL_DIR, BATON_REQUIRED, BATON_STRICT.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from prefect.client.schemas.objects import TaskRun
from prefect.context import FlowRunContext, TaskRunContext
from prefect.logging.loggers import flow_run_logger, task_run_logger

from adapters.publish import Outcome, Publisher, stable_event_id
from broker.client import Unrouted
from broker.core.events import Event

Parameters = dict[str, Any]
DatasetSpec = str | Callable[[Parameters], str]
PartitionSpec = str | Callable[[Parameters], str | None] | None
MetadataSpec = Mapping[str, Any] | Callable[[Parameters, Any], Mapping[str, Any] | None] | None
RunLogger = logging.Logger | logging.LoggerAdapter[logging.Logger]


class TemplateError(ValueError):
    """A dataset or partition template that the run's parameters cannot fill."""


def from_result(parameters: Parameters, result: Any) -> Mapping[str, Any] | None:
    """Metadata from the run's return value, when that is a dict (else none)."""
    return result if isinstance(result, Mapping) else None


def publish_on_completion(
    dataset: DatasetSpec,
    partition: PartitionSpec = None,
    *,
    metadata: MetadataSpec = None,
    publisher: Publisher | None = None,
) -> PublishHook:
    """A hook for `on_completion=[...]` of a flow or task: publishes `dataset` done."""
    return PublishHook(dataset, partition, metadata=metadata, publisher=publisher)


def publish_on_failure(
    dataset: DatasetSpec,
    partition: PartitionSpec = None,
    *,
    metadata: MetadataSpec = None,
    publisher: Publisher | None = None,
) -> PublishHook:
    """A hook for `on_failure=[...]`: a `failed` event, which Baton records and shows
    but which never satisfies a dependency. Metadata defaults to the state's message."""
    return PublishHook(dataset, partition, metadata=metadata, publisher=publisher,
                       status="failed")  # fmt: skip


@dataclass(frozen=True)
class _Run:
    """What a hook knows of the run it follows."""

    identity: str  # the flow run id, or the task run id outside any flow
    producer: str
    parameters: Parameters
    logger: RunLogger


class PublishHook:
    """A Prefect state hook, for flows and tasks alike; see the module docstring."""

    __name__: str  # Prefect names the hook by it in the run's log

    def __init__(
        self,
        dataset: DatasetSpec,
        partition: PartitionSpec = None,
        *,
        metadata: MetadataSpec = None,
        publisher: Publisher | None = None,
        status: str = "success",
    ) -> None:
        self.dataset, self.partition, self.metadata = dataset, partition, metadata
        self.publisher, self.status = publisher, status
        self.__name__ = f"publish_to_baton({_describe(dataset)})"

    async def __call__(self, flow: Any, flow_run: Any, state: Any) -> None:
        """Called by Prefect with (flow, flow_run, state), or on a task with (task,
        task_run, state): the names are the flow's, which type checkers compare."""
        if isinstance(flow_run, TaskRun):
            followed = _task_run(flow, flow_run)
        else:
            followed = _flow_run(flow, flow_run)
        try:
            publisher = self.publisher or Publisher(producer=followed.producer)
            event = await self._event(publisher, followed, state)
        except TemplateError as exc:
            followed.logger.error("Baton: nothing published: %s", exc)
            return
        except Exception as exc:
            followed.logger.error("Baton: nothing published: %r", exc, exc_info=True)
            return
        try:
            outcome = await asyncio.to_thread(publisher.publish, [event])
        except Unrouted as exc:  # strict: a hook cannot fail the run either
            followed.logger.error("Baton: %s was published, but %s", _what(event), exc)
            return
        except Exception as exc:  # `required`: a hook cannot fail the run, so say it loud
            followed.logger.error("Baton: %s not delivered: %s", _what(event), exc)
            return
        _report(followed.logger, publisher, event, outcome)

    async def _event(self, publisher: Publisher, followed: _Run, state: Any) -> Event:
        parameters = followed.parameters
        dataset = _fill("dataset", self.dataset, parameters)
        if dataset is None:
            raise TemplateError("the dataset function returned None, not a name")
        partition = _fill("partition", self.partition, parameters)
        if callable(self.metadata):
            result = await state.aresult(raise_on_failure=False)
            metadata = self.metadata(dict(parameters), result) or {}
        elif self.metadata is None and self.status == "failed" and state.message:
            metadata = {"error": str(state.message)}
        else:
            metadata = self.metadata or {}
        return publisher.event(
            dataset, partition, status=self.status, metadata=metadata,
            event_id=_event_id(followed.identity, dataset, partition, self.status),
        )  # fmt: skip


def publish(
    dataset: str,
    partition: str | None = None,
    *,
    metadata: Mapping[str, Any] | None = None,
    status: str = "success",
    required: bool | None = None,
    strict: bool | None = None,
    publisher: Publisher | None = None,
) -> Outcome:
    """Publish from inside a running flow or task, with the id the hooks use.

    `required=True` (or BATON_REQUIRED) raises when Baton cannot be reached, failing
    the run (the event stays in the spool all the same); `strict=True` (or
    BATON_STRICT) raises Unrouted when the event feeds no contract, or cannot feed one
    that reads its dataset (Baton keeps it); a given `publisher` keeps its own settings."""
    followed = _current_run()
    publisher = publisher or Publisher(required=required, strict=strict, producer=followed.producer)
    event = publisher.event(
        dataset, partition, status=status, metadata=metadata,
        event_id=_event_id(followed.identity, dataset, partition, status),
    )  # fmt: skip
    outcome = publisher.publish([event])
    _report(followed.logger, publisher, event, outcome)
    return outcome


def _event_id(identity: str, dataset: str, partition: str | None, status: str) -> str:
    # A failed event has an id of its own: a run that fails, is retried by hand and then
    # completes announces both.
    return stable_event_id("prefect", identity, dataset, partition,
                           None if status == "success" else status)  # fmt: skip


def _flow_run(flow: Any, flow_run: Any) -> _Run:
    # The context holds the parameters as the flow got them, defaults and all; the API's
    # copy (outside the run's context) has only those that were passed, as JSON.
    context = FlowRunContext.get()
    parameters = flow_run.parameters
    if context is not None and getattr(context.flow_run, "id", None) == flow_run.id:
        parameters = context.parameters
    return _Run(str(flow_run.id), f"prefect://{flow.name}", dict(parameters or {}),
                flow_run_logger(flow_run, flow))  # fmt: skip


def _task_run(task: Any, task_run: Any) -> _Run:
    context = TaskRunContext.get()
    parameters = context.parameters if context and context.task_run.id == task_run.id else {}
    flow_context = FlowRunContext.get()
    flow_name = flow_context.flow.name if flow_context and flow_context.flow else None
    producer = f"prefect://{flow_name}/{task.name}" if flow_name else f"prefect://{task.name}"
    identity = task_run.flow_run_id or task_run.id
    return _Run(str(identity), producer, dict(parameters), task_run_logger(task_run, task))


def _current_run() -> _Run:
    task_context, flow_context = TaskRunContext.get(), FlowRunContext.get()
    if task_context is not None:
        return _task_run(task_context.task, task_context.task_run)
    if flow_context is not None and flow_context.flow_run is not None:
        return _flow_run(flow_context.flow, flow_context.flow_run)
    raise RuntimeError("publish() runs inside a Prefect flow or task; elsewhere use BatonClient")


def _fill(what: str, spec: DatasetSpec | PartitionSpec, parameters: Parameters) -> str | None:
    if spec is None:
        return None
    if callable(spec):
        value = spec(dict(parameters))
        if value is not None and not isinstance(value, str):
            raise TemplateError(f"the {what} function returned {value!r}, not a string")
        return value
    try:
        return spec.format_map(parameters)
    except KeyError as exc:
        have = ", ".join(sorted(parameters)) or "none"
        raise TemplateError(
            f"the {what} template {spec!r} names the parameter {exc.args[0]!r}, which this "
            f"run does not have (its parameters: {have})"
        ) from None
    except (IndexError, ValueError, AttributeError) as exc:
        raise TemplateError(f"the {what} template {spec!r} does not fit: {exc}") from None


def _report(logger: RunLogger, publisher: Publisher, event: Event, outcome: Outcome) -> None:
    what = _what(event)
    if outcome.flushed:
        logger.info("Baton: sent %d event(s) that waited in the spool", outcome.flushed)
    if outcome.accepted:
        logger.info("Baton: published %s (event %s)", what, event.event_id)
    elif outcome.duplicates:
        logger.info("Baton: %s was already published (event %s)", what, event.event_id)
    elif outcome.spooled:
        logger.warning(
            "Baton at %s is unavailable: %s waits in %s, sent with the next publish or "
            "`python -m adapters.publish flush`", publisher.url, what, publisher.spool.folder,
        )  # fmt: skip
    elif outcome.refused:
        logger.error("Baton refused %s: %s", what, outcome.refused)
    if outcome.unrouted:
        logger.warning("Baton: %s goes nowhere it is read: %s", what, "; ".join(outcome.unrouted))


def _what(event: Event) -> str:
    return f"{event.dataset} {event.partition}" if event.partition else event.dataset


def _describe(spec: DatasetSpec) -> str:
    return spec if isinstance(spec, str) else getattr(spec, "__name__", "dataset")
