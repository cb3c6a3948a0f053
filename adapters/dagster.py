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
quoted: PythonError is transient (why: `adapters.dagster_graphql`), every other member
permanent. An unknown job or asset while a code location fails to load is transient as
well: the job may be in the broken location, back once it is fixed. HTTP and transport
errors go through `adapters._http`; a GraphQL error (a query this Dagster does not know)
quotes its messages. The GraphQL documents and the reading of Dagster's answers live in
`adapters.dagster_graphql`.

Auth: `token` (Dagster+) as the `Dagster-Cloud-Api-Token` header.
"""

from __future__ import annotations

from typing import Any

import httpx

from adapters import dagster_graphql as gql
from adapters._http import classify, translate_errors
from broker.core.errors import TargetError, TargetRejected, TargetUnavailable
from broker.core.settings import DagsterTarget as DagsterConfig
from broker.dispatch.target import Receipt, RunStatus, TriggerRequest

TRIGGER_TAG = "baton/trigger_id"
CONTRACT_TAG = "baton/contract"
PARTITION_TAG = "dagster/partition"
DEFAULT_REPOSITORY = "__repository__"


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

    def reads_inputs(self, fields: dict[str, Any]) -> bool:
        """A run is started from the rendered trigger alone, never its inputs."""
        return False

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
        result = (await self.query(gql.LAUNCH, {"params": params}))["launchRun"]
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
        answer = (await self.query(gql.RUNS, variables))["runsOrError"]
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
            same = keys == {tuple(gql.asset_path(key)) for key in spec.get("assets") or []}
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
        selector = gql.asset_selector(self.label, spec, nodes)
        unpartitioned = spec.get("partition") is None
        needing = [gql.asset_key(n) for n in nodes if n.get("isPartitioned") and unpartitioned]
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
            "keys": [{"path": gql.asset_path(key)} for key in keys],
            "withPartitions": with_partitions,
        }
        nodes = [
            node
            for node in (await self.query(gql.ASSETS, variables))["assetNodes"]
            if node.get("isMaterializable") and gql.in_place(node, spec)
        ]
        missing = sorted(set(keys) - {gql.asset_key(node) for node in nodes})
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
        answer = (await self.query(gql.WORKSPACE, {}))["workspaceOrError"]
        if answer.get("__typename") != "Workspace":
            raise self.error("workspaceOrError", answer)
        broken = []
        for entry in answer["locationEntries"]:
            loaded = entry.get("locationOrLoadError") or {}
            if loaded.get("__typename") == "PythonError" and location in (None, entry["name"]):
                broken.append(
                    f"code location {entry['name']!r} failed to load: {gql.python_error(loaded)}"
                )
        return broken

    async def status(self, ref: str) -> RunStatus:
        answer = (await self.query(gql.RUN, {"runId": ref}))["runOrError"]
        if answer.get("__typename") != "Run":
            raise self.error("runOrError", answer)
        return gql.run_status(answer)

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
            selector = gql.asset_selector(self.label, spec, nodes)
            problems += gql.partition_problems(self.label, spec.get("partition"), nodes)
        # isPipelineConfigValid takes a PipelineSelector: `pipelineName` for `jobName`.
        pipeline = {k: v for k, v in selector.items() if k != "jobName"}
        pipeline["pipelineName"] = selector["jobName"]
        variables = {"pipeline": pipeline, "runConfig": spec.get("run_config") or {}}
        answer = (await self.query(gql.VALIDATE, variables))["isPipelineConfigValid"]
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
        return gql.error(self.label, field, answer)

    async def aclose(self) -> None:
        await self.client.aclose()
