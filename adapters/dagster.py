"""The `dagster` target: launch a run of a job, or materialize assets, over Dagster's GraphQL.

    runsOrError(filter: {tags: [baton/trigger_id]})    an earlier run of this trigger?
    assetNodes(assetKeys)                              (assets) where the assets live
    launchRun(executionParams: {selector, runConfigData, executionMetadata: {tags}})
    runOrError(runId)                                  the run's status
    isPipelineConfigValid(pipeline, runConfigData)     `check`: is the run config valid?
    workspaceOrError                                   which code locations failed to load

**Idempotency.** Dagster chooses run ids itself, so the trigger id rides in the run tag
`baton/trigger_id` and is looked up before every launch: a retry finds the run the first
attempt made (even one whose answer timed out) and returns it. A re-execution of that
run from Dagster's UI copies its tags, so the run taken is the original (no root run),
and a tagged run of another job, or of other assets, is a conflict, never ours. The
look-up and the launch are two calls, not one transaction: this relies on one dispatch
of a trigger at a time, which Baton's claimed stream entries give.

**Jobs** (`job` + `location` + `repository`): `launchRun` of that job, `run_config` as its
run config. **Assets** (`assets`: keys as "prefix/name"): `launchRun` of `__ASSET_JOB`,
the implicit job Dagster builds in each repository for its assets (what the UI's
Materialize button launches), with `assetSelection` = those keys; the keys are first
found with `assetNodes`, which names their code location and repository (`location`
may be left out) and the asset job that holds them all. A partitioned asset needs a
`partition` (Dagster would launch the run and fail it). `partition`, in either mode,
becomes the run tag `dagster/partition`; `tags` are added, and `baton/contract`.

**Errors.** Dagster answers most failures with a member of the result union, which is
quoted: PythonError is transient (see `_TRANSIENT`), every other member permanent. An
unknown job or asset while a code location fails to load is transient as well: the job
may be in the broken location, back once it is fixed. HTTP and transport errors go
through `adapters._http`; a GraphQL error (a query this Dagster does not know) quotes
its messages.

Auth: `token` (Dagster+) as the `Dagster-Cloud-Api-Token` header.
"""

from __future__ import annotations

from typing import Any

import httpx

from adapters._http import classify, translate_errors
from broker.core.errors import TargetError, TargetRejected, TargetUnavailable
from broker.core.settings import DagsterTarget as DagsterConfig
from broker.dispatch.target import Receipt, RunStatus, TriggerRequest

TRIGGER_TAG = "baton/trigger_id"
CONTRACT_TAG = "baton/contract"
PARTITION_TAG = "dagster/partition"
ASSET_JOB = "__ASSET_JOB"
DEFAULT_REPOSITORY = "__repository__"

# Dagster run statuses -> Baton's run states. MANAGED runs are run outside Dagster's
# control plane and SUSPENDED ones wait on outside work: both unfinished.
_STATES = {
    "QUEUED": "queued",
    "NOT_STARTED": "queued",
    "STARTING": "running",
    "STARTED": "running",
    "SUSPENDED": "running",
    "MANAGED": "running",
    "CANCELING": "running",
    "SUCCESS": "succeeded",
    "FAILURE": "failed",
    "CANCELED": "failed",
}

# The members of launchRun's LaunchRunResult union (Dagster 1.13), bar LaunchRunSuccess:
#   PipelineNotFoundError            no such job, repository or code location
#   RunConfigValidationInvalid       the run config does not fit the job's config schema
#   InvalidSubsetError               an asset (or op) selection the job does not hold
#   InvalidStepError                 a step key the plan lacks (re-executions only)
#   InvalidOutputError               a step output the plan lacks (re-executions only)
#   PresetNotFoundError              a preset the job lacks (legacy; Baton sends none)
#   ConflictingExecutionParamsError  a preset and a run config both given (legacy)
#   NoModeProvidedError              a legacy multi-mode job without a mode
#   RunConflict                      a run with the run id asked for already exists
#   UnauthorizedError                the token may not launch this job
#   PythonError                      an exception inside Dagster
# All are permanent but PythonError. It is the exception Dagster did not expect, answered
# with HTTP 500 like the server errors Baton retries anyway: a code server restarting or
# unreachable over gRPC, the run storage's database failing, a location reloading. Those
# pass; so PythonError is transient, and retried with backoff until the attempts are
# spent. The known deterministic one, a partition key the partitions definition cannot
# parse ("ValueError: time data 'x' does not match format '%Y-%m-%d%z'"), therefore
# spends the retries before it is dead-lettered, with that message; `check` finds it
# before any trigger does.
_TRANSIENT = frozenset({"PythonError"})

_RUNS = """
query BatonRunsOfTrigger($filter: RunsFilter!) {
  runsOrError(filter: $filter, limit: 100) {
    __typename
    ... on Runs { results { runId jobName rootRunId creationTime assetSelection { path } } }
    ... on Error { message }
    ... on PythonError { causes { message } }
  }
}"""

_ASSETS = """
query BatonAssets($keys: [AssetKeyInput!]!, $withPartitions: Boolean!) {
  assetNodes(assetKeys: $keys) {
    assetKey { path }
    isMaterializable
    isPartitioned
    jobNames
    partitionKeys @include(if: $withPartitions)
    repository { name location { name } }
  }
}"""

_LAUNCH = """
mutation BatonLaunchRun($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on Error { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { stepKey invalidOutputName }
    ... on PythonError { causes { message } }
  }
}"""

_RUN = """
query BatonRun($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { status tags { key value } }
    ... on Error { message }
    ... on PythonError { causes { message } }
  }
}"""

_VALIDATE = """
query BatonValidate($pipeline: PipelineSelector!, $runConfig: RunConfigData) {
  isPipelineConfigValid(pipeline: $pipeline, mode: "default", runConfigData: $runConfig) {
    __typename
    ... on Error { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PythonError { causes { message } }
  }
}"""

_WORKSPACE = """
query BatonWorkspace {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        locationOrLoadError { __typename ... on PythonError { message causes { message } } }
      }
    }
    ... on PythonError { message }
  }
}"""


def client_for(config: DagsterConfig) -> httpx.AsyncClient:
    headers = {}
    if config.token is not None:
        headers["Dagster-Cloud-Api-Token"] = config.token.get_secret_value()
    return httpx.AsyncClient(headers=headers, timeout=config.timeout)


class DagsterTarget:
    def __init__(
        self, name: str, config: DagsterConfig, client: httpx.AsyncClient | None = None
    ) -> None:
        self.name = name
        self.config = config
        self.client = client or client_for(config)
        self.label = f"dagster {name}"

    @property
    def ui(self) -> str:
        base = self.config.url.rstrip("/")
        return base[: -len("/graphql")] if base.endswith("/graphql") else base

    async def query(self, document: str, variables: dict[str, Any]) -> dict[str, Any]:
        """The `data` of one GraphQL request; raises on transport, HTTP and GraphQL errors.

        Data is taken even from an HTTP 500: Dagster answers a PythonError member that way.
        """
        with translate_errors(self.label):
            response = await self.client.post(
                self.config.url, json={"query": document, "variables": variables}
            )
        try:
            body = response.json()
        except ValueError:
            body = None
        data = body.get("data") if isinstance(body, dict) else None
        if isinstance(data, dict) and data and None not in data.values():
            return data
        errors = body.get("errors") if isinstance(body, dict) else None
        if isinstance(errors, list) and errors:
            text = "GraphQL: " + "; ".join(str(e.get("message", e)) for e in errors)
            classify(self.label, response.status_code, text)
            raise TargetRejected(f"{self.label}: {text[:500]}")
        classify(self.label, response.status_code, response.text)
        raise TargetRejected(
            f"{self.label}: {self.config.url} answered no GraphQL data (is it Dagster's "
            f"/graphql endpoint?): {response.text[:200]}"
        )

    async def trigger(self, request: TriggerRequest) -> Receipt:
        spec = request.spec
        earlier = await self.run_of_trigger(request.trigger_id, spec)
        if earlier is not None:
            return self._receipt(earlier)
        selector = await self.selector(spec)
        tags = {str(k): str(v) for k, v in (spec.get("tags") or {}).items()}
        if spec.get("partition") is not None:
            tags[PARTITION_TAG] = str(spec["partition"])
        tags |= {CONTRACT_TAG: request.contract, TRIGGER_TAG: request.trigger_id}
        params = {
            "selector": selector,
            "runConfigData": spec.get("run_config") or {},
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
        }
        result = (await self.query(_LAUNCH, {"params": params}))["launchRun"]
        if result.get("__typename") == "LaunchRunSuccess":
            return self._receipt(str(result["run"]["runId"]))
        error = self.error("launchRun", result)
        if result.get("__typename") == "PipelineNotFoundError":
            raise await self._unless_location_broken(error, selector["repositoryLocationName"])
        raise error

    def _receipt(self, run_id: str) -> Receipt:
        return Receipt(ref=run_id, url=f"{self.ui}/runs/{run_id}")

    async def run_of_trigger(self, trigger_id: str, spec: dict[str, Any]) -> str | None:
        """The id of the run an earlier attempt launched for `trigger_id`, if any."""
        variables = {"filter": {"tags": [{"key": TRIGGER_TAG, "value": trigger_id}]}}
        answer = (await self.query(_RUNS, variables))["runsOrError"]
        if answer.get("__typename") != "Runs":
            raise self.error("runsOrError", answer)
        runs = answer["results"]
        if not runs:
            return None
        # Re-executions carry the tag too; the original is the one without a root run.
        originals = [r for r in runs if not r.get("rootRunId")] or runs
        run = min(originals, key=lambda r: float(r.get("creationTime") or 0))
        if spec.get("job") is not None:
            same = run.get("jobName") == spec["job"]
        else:
            keys = {tuple(a["path"]) for a in run.get("assetSelection") or []}
            same = keys == {tuple(_path(key)) for key in spec.get("assets") or []}
        if not same:
            what = f"job {spec['job']!r}" if spec.get("job") else f"assets {spec.get('assets')}"
            raise TargetRejected(
                f"{self.label}: trigger id {trigger_id!r} already tags run {run['runId']} "
                f"of job {run.get('jobName')!r}, not of {what}"
            )
        return str(run["runId"])

    async def selector(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The JobOrPipelineSelector to launch: the job, or the asset job with the assets."""
        if spec.get("assets") is None:
            if not spec.get("job") or not spec.get("location"):
                raise TargetRejected(f"{self.label}: a trigger needs job and location, or assets")
            return {
                "repositoryLocationName": str(spec["location"]),
                "repositoryName": str(spec.get("repository") or DEFAULT_REPOSITORY),
                "jobName": str(spec["job"]),
            }
        nodes = await self.asset_nodes(spec)
        selector = _asset_selector(self.label, spec, nodes)
        unpartitioned = spec.get("partition") is None
        needing = [_key(n) for n in nodes if n.get("isPartitioned") and unpartitioned]
        if needing:
            raise TargetRejected(
                f"{self.label}: asset(s) {', '.join(needing)} are partitioned; the trigger "
                f"needs a partition"
            )
        return selector

    async def asset_nodes(
        self, spec: dict[str, Any], with_partitions: bool = False
    ) -> list[dict[str, Any]]:
        """The materializable definitions of the spec's asset keys (in its location, if
        given); raises TargetRejected naming the keys none defines."""
        keys = [str(key) for key in spec.get("assets") or []]
        if not keys:
            raise TargetRejected(f"{self.label}: `assets` lists no asset key")
        variables = {
            "keys": [{"path": _path(key)} for key in keys],
            "withPartitions": with_partitions,
        }
        nodes = [
            node
            for node in (await self.query(_ASSETS, variables))["assetNodes"]
            if node.get("isMaterializable") and _in_place(node, spec)
        ]
        missing = sorted(set(keys) - {_key(node) for node in nodes})
        if missing:
            where = f" in code location {spec['location']!r}" if spec.get("location") else ""
            error = TargetRejected(
                f"{self.label}: no materializable asset {', '.join(missing)}{where}"
            )
            raise await self._unless_location_broken(error, spec.get("location"))
        return nodes

    async def _unless_location_broken(
        self, error: TargetError, location: str | None
    ) -> TargetError:
        """`error` (a job or asset not found), or TargetUnavailable if a code location
        that could hold it failed to load: then the job may come back with a fix."""
        broken = await self.broken_locations(location)
        if not broken:
            return error
        return TargetUnavailable(f"{error}; {'; '.join(broken)}")

    async def broken_locations(self, location: str | None = None) -> list[str]:
        """Code locations (all, or just `location`) that failed to load, with the error."""
        answer = (await self.query(_WORKSPACE, {}))["workspaceOrError"]
        if answer.get("__typename") != "Workspace":
            raise self.error("workspaceOrError", answer)
        broken = []
        for entry in answer["locationEntries"]:
            loaded = entry.get("locationOrLoadError") or {}
            if loaded.get("__typename") == "PythonError" and location in (None, entry["name"]):
                broken.append(
                    f"code location {entry['name']!r} failed to load: {_python_error(loaded)}"
                )
        return broken

    async def status(self, ref: str) -> RunStatus:
        answer = (await self.query(_RUN, {"runId": ref}))["runOrError"]
        if answer.get("__typename") != "Run":
            raise self.error("runOrError", answer)
        status = str(answer.get("status") or "QUEUED")
        tags = {t["key"]: t["value"] for t in answer.get("tags") or []}
        reason = tags.get("dagster/failure_reason")
        detail = f"{status} ({reason})" if reason else status
        return RunStatus(state=_STATES.get(status, "running"), detail=detail)

    async def check(self, spec: dict[str, Any]) -> list[str]:
        """What `baton check --online` asks: the job or the assets exist (and, for
        assets, the partition), and Dagster finds the run config valid."""
        try:
            return await self._check(spec)
        except (TargetRejected, TargetUnavailable) as exc:
            return [str(exc)]

    async def _check(self, spec: dict[str, Any]) -> list[str]:
        problems = []
        if spec.get("assets") is None:
            selector = await self.selector(spec)
        else:
            nodes = await self.asset_nodes(spec, with_partitions=True)
            selector = _asset_selector(self.label, spec, nodes)
            problems += _partition_problems(self.label, spec.get("partition"), nodes)
        # isPipelineConfigValid takes a PipelineSelector: `pipelineName` for `jobName`.
        pipeline = {k: v for k, v in selector.items() if k != "jobName"}
        pipeline["pipelineName"] = selector["jobName"]
        variables = {"pipeline": pipeline, "runConfig": spec.get("run_config") or {}}
        answer = (await self.query(_VALIDATE, variables))["isPipelineConfigValid"]
        kind = answer.get("__typename")
        if kind == "RunConfigValidationInvalid":
            problems += [
                f"{self.label}: run config of job {pipeline['pipelineName']!r}: {e['message']}"
                for e in answer.get("errors") or []
            ]
        elif kind != "PipelineConfigValidationValid":
            problems.append(str(self.error("isPipelineConfigValid", answer)))
            if kind == "PipelineNotFoundError":
                problems += await self.broken_locations(pipeline["repositoryLocationName"])
        return problems

    def error(self, field: str, answer: dict[str, Any]) -> TargetError:
        """A union member other than success as Baton's error, in Dagster's words."""
        kind = str(answer.get("__typename") or "an empty answer")
        detail = f"{self.label}: {field}: {kind}: {_describe(answer)}"
        return TargetUnavailable(detail) if kind in _TRANSIENT else TargetRejected(detail)

    async def aclose(self) -> None:
        await self.client.aclose()


def _path(key: str) -> list[str]:
    """An asset key as written in a contract ("prefix/name") -> its GraphQL path."""
    return [part for part in str(key).split("/") if part]


def _key(node: dict[str, Any]) -> str:
    return "/".join(node["assetKey"]["path"])


def _in_place(node: dict[str, Any], spec: dict[str, Any]) -> bool:
    """The node is in the spec's code location and repository, when it names them."""
    repository = node.get("repository") or {}
    location = (repository.get("location") or {}).get("name")
    if spec.get("location") and location != spec["location"]:
        return False
    return not spec.get("repository") or repository.get("name") == spec["repository"]


def _asset_selector(
    label: str, spec: dict[str, Any], nodes: list[dict[str, Any]]
) -> dict[str, Any]:
    """Launch `nodes` as one run: one repository, and an asset job holding them all."""
    places = {(n["repository"]["location"]["name"], n["repository"]["name"]) for n in nodes}
    if len(places) > 1:
        listed = ", ".join(f"{loc}/{repo}" for loc, repo in sorted(places))
        raise TargetRejected(
            f"{label}: assets {', '.join(sorted(map(_key, nodes)))} are spread over {listed}; "
            f"one run materializes the assets of one repository"
        )
    jobs = set.intersection(*(set(n.get("jobNames") or []) for n in nodes))
    asset_jobs = sorted(j for j in jobs if j.startswith(ASSET_JOB))
    if not asset_jobs:
        raise TargetRejected(
            f"{label}: no asset job of Dagster holds all of {', '.join(map(_key, nodes))}"
        )
    ((location, repository),) = places
    return {
        "repositoryLocationName": location,
        "repositoryName": repository,
        "jobName": ASSET_JOB if ASSET_JOB in asset_jobs else asset_jobs[0],
        "assetSelection": [{"path": _path(key)} for key in spec["assets"]],
    }


def _partition_problems(label: str, partition: object, nodes: list[dict[str, Any]]) -> list[str]:
    partitioned = [n for n in nodes if n.get("isPartitioned")]
    if partition is None:
        return [
            f"{label}: asset {_key(n)} is partitioned; the trigger needs a partition"
            for n in partitioned
        ]
    if not partitioned:
        return [f"{label}: partition {partition!r} given, but no asset of it is partitioned"]
    return [
        f"{label}: asset {_key(n)} has no partition {partition!r}"
        for n in partitioned
        if str(partition) not in (n.get("partitionKeys") or [])
    ]


def _describe(answer: dict[str, Any]) -> str:
    kind = answer.get("__typename")
    if kind == "RunConfigValidationInvalid":
        return "; ".join(str(e.get("message")) for e in answer.get("errors") or [])
    if kind == "InvalidStepError":
        return f"no step {answer.get('invalidStepKey')!r}"
    if kind == "InvalidOutputError":
        return f"step {answer.get('stepKey')!r} has no output {answer.get('invalidOutputName')!r}"
    if kind == "PythonError":
        return _python_error(answer)
    return str(answer.get("message") or answer).strip()


def _python_error(error: dict[str, Any]) -> str:
    """A PythonError's message, and its causes' (where the user's exception is)."""
    messages = [str(error.get("message") or "").strip()]
    messages += [str(c.get("message") or "").strip() for c in error.get("causes") or []]
    return " <- caused by ".join(m for m in messages if m)
