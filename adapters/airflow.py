"""The `airflow` target: start a DAG run, or post an asset event, in Airflow 3.

Through apache-airflow-client (synchronous, so each call runs in a worker thread; an
Airflow trigger is a rare event next to the event path, and the client's models keep
the request exactly as Airflow's API defines it).

**DAG runs** (`dag_id`). The trigger id is the `dag_run_id`. `logical_date` defaults to
the partition start (null when unpartitioned, which Airflow 3 accepts, and for a
partition's later generations: Airflow keeps one run per logical date), the data
interval to the partition's bounds, and `partition_key` to the partition when the DAG
is partitioned (Airflow >= 3.2 answers 400 to a partition key on any other DAG).
Airflow answers 409 both for a repeated `dag_run_id` and for a new id whose
`logical_date` another run of the DAG already has, with the same words; so on 409 the
run is read back by our id: ours means it was already triggered (success), anything
else is a permanent conflict naming the run that holds the date. A paused DAG accepts
the run and leaves it queued: with
`unpause: true` the adapter unpauses it first, otherwise the receipt carries a warning
that says so.

**Asset events** (`asset_event: <uri>`). Posts a partitioned asset event, so DAGs on
Airflow's own asset schedules run: Baton as the bridge into Airflow's scheduler. Asset
events take no idempotency key, so the event carries `baton_trigger_id` in its `extra`
and the adapter looks for it among the asset's recent events before posting.

Auth: a JWT from `POST /auth/token` with `username`/`password`, fetched on first use and
again when Airflow answers 401/403 (it expired); or a static `token`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import httpx
import urllib3
from airflow_client import client as af
from airflow_client.client.exceptions import ApiException

from adapters._http import classify, raise_for_status, translate_errors
from broker.core.errors import TargetRejected, TargetUnavailable
from broker.core.settings import AirflowTarget as AirflowConfig
from broker.dispatch.target import Receipt, RunStatus, TriggerRequest

T = TypeVar("T")

# Airflow DAG run states -> Baton's run states.
_STATES = {"queued": "queued", "running": "running", "success": "succeeded", "failed": "failed"}
# How many of an asset's newest events are searched for an earlier post of a trigger.
_ASSET_EVENT_LOOKBACK = 100


class AirflowTarget:
    def __init__(self, name: str, config: AirflowConfig) -> None:
        self.name = name
        self.config = config
        self.label = f"airflow {name}"
        self.base = config.url.rstrip("/")
        self._token: str | None = (
            config.token.get_secret_value() if config.token is not None else None
        )
        self._lock = threading.Lock()
        self._api: af.ApiClient | None = None
        self._assets: dict[str, int] = {}

    # -- plumbing --------------------------------------------------------------------
    def _client(self) -> af.ApiClient:
        with self._lock:
            if self._api is None:
                configuration = af.Configuration(host=self.base, access_token=self._fetch_token())
                configuration.retries = urllib3.Retry(total=0, redirect=0)  # Baton retries
                self._api = af.ApiClient(configuration)
            return self._api

    def _fetch_token(self) -> str:
        if self._token is not None:
            return self._token
        if self.config.username is None or self.config.password is None:
            raise TargetRejected(f"{self.label}: give username and password, or token")
        with translate_errors(self.label):
            response = httpx.post(
                f"{self.base}/auth/token",
                json={
                    "username": self.config.username,
                    "password": self.config.password.get_secret_value(),
                },
                timeout=self.config.timeout,
            )
        raise_for_status(f"{self.label} login", response)
        self._token = str(response.json()["access_token"])
        return self._token

    def _renew(self) -> None:
        with self._lock:
            if self.config.token is not None:
                return  # a static token cannot be renewed
            self._token = None
            self._api = None

    def _call(self, what: Callable[[af.ApiClient], T]) -> T:
        """Run one API call: a 401/403 renews the JWT once; errors become Baton's."""
        for attempt in (1, 2):
            try:
                with translate_errors(self.label):
                    try:
                        return what(self._client())
                    except urllib3.exceptions.HTTPError as exc:
                        raise TargetUnavailable(f"{self.label}: {exc}") from exc
            except ApiException as exc:
                if exc.status in (401, 403) and attempt == 1 and self.config.token is None:
                    self._renew()
                    continue
                if exc.status == 0:
                    raise TargetUnavailable(f"{self.label}: {exc.reason}") from exc
                classify(self.label, int(exc.status or 0), _detail(exc))
                raise  # pragma: no cover - classify raised for any non-2xx
        raise AssertionError("unreachable")

    async def _run(self, what: Callable[[af.ApiClient], T]) -> T:
        return await asyncio.to_thread(self._call, what)

    def _timeout(self) -> float:
        return self.config.timeout

    # -- the target --------------------------------------------------------------------
    def reads_inputs(self, fields: dict[str, Any]) -> bool:
        """A run is started from the rendered trigger alone, never its inputs."""
        return False

    async def trigger(self, request: TriggerRequest) -> Receipt:
        if request.spec.get("asset_event"):
            return await self._run(lambda api: self._post_asset_event(api, request))
        return await self._run(lambda api: self._trigger_dag(api, request))

    def _trigger_dag(self, api: af.ApiClient, request: TriggerRequest) -> Receipt:
        dag_id, run_id = str(request.spec["dag_id"]), request.trigger_id
        dags = af.DAGApi(api)
        try:
            dag = dags.get_dag(dag_id, _request_timeout=self._timeout())
        except ApiException as exc:
            if exc.status == 404:
                raise TargetRejected(f"{self.label}: DAG {dag_id!r} not found") from exc
            raise
        warning = ""
        if dag.is_paused and self.config.unpause:
            dags.patch_dag(dag_id, af.DAGPatchBody(is_paused=False),
                           _request_timeout=self._timeout())  # fmt: skip
        elif dag.is_paused:
            warning = (
                f"DAG {dag_id} is paused: the run waits, queued, until someone unpauses it "
                "(or set unpause: true on the target)"
            )
        body = self._run_body(request, partitioned=_partitioned(dag))
        runs = af.DagRunApi(api)
        try:
            runs.trigger_dag_run(dag_id, body, _request_timeout=self._timeout())
        except ApiException as exc:
            if exc.status != 409:
                raise
            self._ours_or_conflict(runs, dag_id, run_id, body)
        return Receipt(ref=f"{dag_id}/{run_id}", url=self._run_url(dag_id, run_id),
                       warning=warning)  # fmt: skip

    def _run_body(self, request: TriggerRequest, partitioned: bool) -> af.TriggerDAGRunPostBody:
        """The run to create. `partition_key` goes only to a partitioned DAG (Airflow
        answers 400 to one on any other DAG) unless the contract sets it explicitly."""
        spec, context = request.spec, request.context
        partition_key = spec.get("partition_key") or (
            request.partition if partitioned and request.partition else None
        )
        start, end = context.get("partition_start"), context.get("partition_end")
        logical = spec.get("logical_date") or start
        if request.generation > 0 and "logical_date" not in spec:
            # A rerun of a partition (restatement, forced backfill): Airflow keeps one run
            # per logical date, and the first generation holds it; this one runs beside
            # it with no logical date (Airflow then sets no data interval either), the
            # partition reaching the DAG through conf or partition_key.
            logical = None
        if not (start and end):  # Airflow takes both bounds or neither
            start = end = None
        return af.TriggerDAGRunPostBody(
            dag_run_id=request.trigger_id,
            logical_date=_when(logical),
            data_interval_start=_when(start),
            data_interval_end=_when(end),
            partition_key=partition_key,
            conf=dict(spec.get("conf") or {}),
            note=spec.get("note"),
        )

    def _ours_or_conflict(
        self, runs: af.DagRunApi, dag_id: str, run_id: str, body: af.TriggerDAGRunPostBody
    ) -> None:
        """After a 409: ours already (fine), or another run holds the logical date."""
        try:
            runs.get_dag_run(dag_id, run_id, _request_timeout=self._timeout())
            return
        except ApiException as exc:
            if exc.status != 404:
                raise
        holder = "another run"
        if body.logical_date is not None:
            found = runs.get_dag_runs(
                dag_id, logical_date_gte=body.logical_date, logical_date_lte=body.logical_date,
                limit=1, _request_timeout=self._timeout(),
            )  # fmt: skip
            if found.dag_runs:
                holder = f"run {found.dag_runs[0].dag_run_id!r}"
        raise TargetRejected(
            f"{self.label}: DAG {dag_id!r} already has {holder} at logical date "
            f"{body.logical_date.isoformat() if body.logical_date else None}; "
            f"Airflow allows one run per logical date (set logical_date: null in the trigger "
            f"to start runs of the same partition side by side)"
        )

    def _run_url(self, dag_id: str, run_id: str) -> str:
        return f"{self.base}/dags/{dag_id}/runs/{run_id}"

    def _asset_id(self, api: af.ApiClient, uri: str) -> int:
        if uri not in self._assets:
            found = af.AssetApi(api).get_assets(uri_pattern=uri, limit=100,
                                                _request_timeout=self._timeout())  # fmt: skip
            exact = [a for a in found.assets if a.uri == uri]
            if not exact:
                raise TargetRejected(
                    f"{self.label}: no asset with uri {uri!r} (Airflow knows an asset once a "
                    "parsed DAG uses it)"
                )
            self._assets[uri] = exact[0].id
        return self._assets[uri]

    def _post_asset_event(self, api: af.ApiClient, request: TriggerRequest) -> Receipt:
        uri = str(request.spec["asset_event"])
        asset_id = self._asset_id(api, uri)
        assets = af.AssetApi(api)
        recent = assets.get_asset_events(
            asset_id=asset_id, order_by=["-timestamp"], limit=_ASSET_EVENT_LOOKBACK,
            _request_timeout=self._timeout(),
        )  # fmt: skip
        for event in recent.asset_events:
            if (event.extra or {}).get("baton_trigger_id") == request.trigger_id:
                return self._asset_receipt(asset_id, event.id)
        extra = {
            **dict(request.spec.get("extra") or {}),
            "baton_trigger_id": request.trigger_id,
            "baton_contract": request.contract,
        }
        body = af.CreateAssetEventsBody(
            asset_id=asset_id, extra=extra,
            partition_key=request.spec.get("partition_key") or request.partition or None,
        )  # fmt: skip
        created = assets.create_asset_event(body, _request_timeout=self._timeout())
        return self._asset_receipt(asset_id, created.id)

    def _asset_receipt(self, asset_id: int, event_id: int) -> Receipt:
        return Receipt(ref=f"asset-event/{event_id}", url=f"{self.base}/assets/{asset_id}")

    async def status(self, ref: str) -> RunStatus:
        if ref.startswith("asset-event/"):
            return RunStatus(state="succeeded", detail="asset event posted")
        dag_id, _, run_id = ref.partition("/")
        run = await self._run(
            lambda api: af.DagRunApi(api).get_dag_run(dag_id, run_id,
                                                      _request_timeout=self._timeout())
        )  # fmt: skip
        state = str(getattr(run.state, "value", run.state))
        return RunStatus(state=_STATES.get(state, "running"), detail=state)

    async def check(self, spec: dict[str, Any]) -> list[str]:
        try:
            return await self._run(lambda api: self._check(api, spec))
        except (TargetRejected, TargetUnavailable) as exc:
            return [str(exc)]

    def _check(self, api: af.ApiClient, spec: dict[str, Any]) -> list[str]:
        if spec.get("asset_event"):
            self._asset_id(api, str(spec["asset_event"]))
            return []
        dag_id = str(spec["dag_id"])
        try:
            dag = af.DAGApi(api).get_dag(dag_id, _request_timeout=self._timeout())
        except ApiException as exc:
            if exc.status == 404:
                return [f"{self.label}: DAG {dag_id!r} not found"]
            raise
        if dag.is_paused and not self.config.unpause:
            return [f"{self.label}: DAG {dag_id!r} is paused; its runs would wait queued"]
        return []

    async def aclose(self) -> None:
        with self._lock:
            api, self._api = self._api, None
        if api is not None:  # the generated client has no close(); its pool has
            api.rest_client.pool_manager.clear()


def _partitioned(dag: Any) -> bool:
    """Takes a partition key: a partitioned timetable, or `schedule=PartitionedAtRuntime()`
    (which the API shows only in its timetable summary)."""
    return bool(dag.timetable_partitioned) or dag.timetable_summary == "PartitionedAtRuntime"


def _when(value: object) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _detail(exc: ApiException) -> str:
    return str(exc.body or exc.reason or "")
