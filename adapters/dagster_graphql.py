"""Dagster's side of the `dagster` target: the GraphQL documents sent, and the reading of
Dagster's answers (run states, asset nodes, union members other than success) into what
`adapters.dagster.DagsterTarget` needs. Pure: no I/O here.
"""

from __future__ import annotations

from typing import Any

from broker.core.errors import TargetError, TargetRejected, TargetUnavailable
from broker.dispatch.target import RunStatus

# The implicit job Dagster builds in each repository for its assets.
ASSET_JOB = "__ASSET_JOB"

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

RUNS = """
query BatonRunsOfTrigger($filter: RunsFilter!) {
  runsOrError(filter: $filter, limit: 100) {
    __typename
    ... on Runs { results { runId jobName rootRunId creationTime assetSelection { path } } }
    ... on Error { message }
    ... on PythonError { causes { message } }
  }
}"""

ASSETS = """
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

LAUNCH = """
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

RUN = """
query BatonRun($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { status tags { key value } }
    ... on Error { message }
    ... on PythonError { causes { message } }
  }
}"""

VALIDATE = """
query BatonValidate($pipeline: PipelineSelector!, $runConfig: RunConfigData) {
  isPipelineConfigValid(pipeline: $pipeline, mode: "default", runConfigData: $runConfig) {
    __typename
    ... on Error { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PythonError { causes { message } }
  }
}"""

WORKSPACE = """
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


def run_status(answer: dict[str, Any]) -> RunStatus:
    """A `Run` member of runOrError as Baton's run state, with Dagster's failure reason."""
    status = str(answer.get("status") or "QUEUED")
    tags = {t["key"]: t["value"] for t in answer.get("tags") or []}
    reason = tags.get("dagster/failure_reason")
    detail = f"{status} ({reason})" if reason else status
    return RunStatus(state=_STATES.get(status, "running"), detail=detail)


def error(label: str, field: str, answer: dict[str, Any]) -> TargetError:
    """A union member other than success as Baton's error, in Dagster's words."""
    kind = str(answer.get("__typename") or "an empty answer")
    detail = f"{label}: {field}: {kind}: {_describe(answer)}"
    return TargetUnavailable(detail) if kind in _TRANSIENT else TargetRejected(detail)


def asset_path(key: str) -> list[str]:
    """An asset key as written in a contract ("prefix/name") -> its GraphQL path."""
    return [part for part in str(key).split("/") if part]


def asset_key(node: dict[str, Any]) -> str:
    return "/".join(node["assetKey"]["path"])


def in_place(node: dict[str, Any], spec: dict[str, Any]) -> bool:
    """The node is in the spec's code location and repository, when it names them."""
    repository = node.get("repository") or {}
    location = (repository.get("location") or {}).get("name")
    if spec.get("location") and location != spec["location"]:
        return False
    return not spec.get("repository") or repository.get("name") == spec["repository"]


def asset_selector(label: str, spec: dict[str, Any], nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """Launch `nodes` as one run: one repository, and an asset job holding them all."""
    places = {(n["repository"]["location"]["name"], n["repository"]["name"]) for n in nodes}
    if len(places) > 1:
        names = ", ".join(sorted(map(asset_key, nodes)))
        listed = ", ".join(f"{loc}/{repo}" for loc, repo in sorted(places))
        raise TargetRejected(
            f"{label}: assets {names} are spread over {listed}; "
            f"one run materializes the assets of one repository"
        )
    jobs = set.intersection(*(set(n.get("jobNames") or []) for n in nodes))
    asset_jobs = sorted(j for j in jobs if j.startswith(ASSET_JOB))
    if not asset_jobs:
        raise TargetRejected(
            f"{label}: no asset job of Dagster holds all of {', '.join(map(asset_key, nodes))}"
        )
    ((location, repository),) = places
    return {
        "repositoryLocationName": location,
        "repositoryName": repository,
        "jobName": ASSET_JOB if ASSET_JOB in asset_jobs else asset_jobs[0],
        "assetSelection": [{"path": asset_path(key)} for key in spec["assets"]],
    }


def partition_problems(label: str, partition: object, nodes: list[dict[str, Any]]) -> list[str]:
    partitioned = [n for n in nodes if n.get("isPartitioned")]
    if partition is None:
        return [
            f"{label}: asset {asset_key(n)} is partitioned; the trigger needs a partition"
            for n in partitioned
        ]
    if not partitioned:
        return [f"{label}: partition {partition!r} given, but no asset of it is partitioned"]
    return [
        f"{label}: asset {asset_key(n)} has no partition {partition!r}"
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
        return python_error(answer)
    return str(answer.get("message") or answer).strip()


def python_error(answer: dict[str, Any]) -> str:
    """A PythonError's message, and its causes' (where the user's exception is)."""
    messages = [str(answer.get("message") or "").strip()]
    messages += [str(c.get("message") or "").strip() for c in answer.get("causes") or []]
    return " <- caused by ".join(m for m in messages if m)
