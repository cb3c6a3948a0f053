"""The `dagster` target against a real `dagster dev` (webserver, daemon, run launcher).

Its workspace holds `dagster_defs.py` and `broken_location.py`, a code location that
fails to load. The server is shared by the session, so every test uses fresh trigger ids.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from adapters.dagster import DagsterTarget
from broker.core.errors import TargetRejected, TargetUnavailable
from broker.core.settings import DagsterTarget as DagsterConfig
from broker.dispatch.target import RunStatus, TriggerRequest
from tests.orchestrators import servers
from tests.orchestrators.conftest import Dagster
from tests.orchestrators.helpers import ask

pytestmark = [pytest.mark.orchestrators, pytest.mark.dagster]

LOCATION = "dagster_defs.py"
REPORT_CONFIG = {"ops": {"build_report": {"config": {"run_date": "2026-11-23", "rows": 12}}}}


def gql(dagster: Dagster, query: str, **variables: Any) -> dict[str, Any]:
    """Ask Dagster directly, to see what the adapter did."""
    response = ask("POST", dagster.graphql, json={"query": query, "variables": variables})
    data: dict[str, Any] = response.json()["data"]
    return data


def runs_tagged(dagster: Dagster, trigger_id: str) -> list[dict[str, Any]]:
    query = """query($tags: [ExecutionTag!]) {
      runsOrError(filter: {tags: $tags}) {
        ... on Runs { results { runId jobName rootRunId runConfig
                                assetSelection { path } tags { key value } } }
      }
    }"""
    answer = gql(dagster, query, tags=[{"key": "baton/trigger_id", "value": trigger_id}])
    results: list[dict[str, Any]] = answer["runsOrError"]["results"]
    return results


def request(**spec: Any) -> TriggerRequest:
    trigger_id = f"baton:test_{uuid.uuid4().hex[:8]}:2026-11-23:0"
    return TriggerRequest(trigger_id, "test", "2026-11-23", 0, spec)


def job_request(job: str = "report_job", **spec: Any) -> TriggerRequest:
    return request(**{"job": job, "location": LOCATION, "run_config": REPORT_CONFIG, **spec})


def target(dagster: Dagster, **overrides: Any) -> DagsterTarget:
    return DagsterTarget("dagster", DagsterConfig.model_validate(dagster.target(**overrides)))


async def finished(dagster_target: DagsterTarget, ref: str, timeout: float = 60) -> RunStatus:
    """Poll the adapter's `status` until the run is done."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        status = await dagster_target.status(ref)
        seen.append(status.state)
        if status.finished:
            return status
        await asyncio.sleep(0.5)
    raise AssertionError(f"run {ref} not finished within {timeout}s; states seen: {seen}")


async def test_a_job_run_starts_with_its_run_config_and_tags_and_succeeds(
    dagster: Dagster,
) -> None:
    dagster_target = target(dagster)
    req = job_request(tags={"team": "finance"})
    try:
        receipt = await dagster_target.trigger(req)
        first = await dagster_target.status(receipt.ref)
        done = await finished(dagster_target, receipt.ref)
    finally:
        await dagster_target.aclose()
    assert first.state in ("queued", "running", "succeeded")
    assert done.state == "succeeded", done.detail
    assert done.detail == "SUCCESS"
    assert receipt.url == f"{dagster.server.url}/runs/{receipt.ref}"
    (run,) = runs_tagged(dagster, req.trigger_id)
    assert run["runId"] == receipt.ref
    assert run["jobName"] == "report_job"
    assert run["runConfig"] == REPORT_CONFIG
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["team"] == "finance"
    assert tags["baton/contract"] == "test"
    assert tags["baton/trigger_id"] == req.trigger_id
    assert "dagster/partition" not in tags


async def test_the_same_trigger_dispatched_twice_makes_one_run(dagster: Dagster) -> None:
    dagster_target = target(dagster)
    req = job_request()
    try:
        first = await dagster_target.trigger(req)
        again = await dagster_target.trigger(req)
    finally:
        await dagster_target.aclose()
    assert again == first
    assert [r["runId"] for r in runs_tagged(dagster, req.trigger_id)] == [first.ref]


async def test_a_re_execution_carrying_the_tag_is_not_taken_for_the_triggered_run(
    dagster: Dagster,
) -> None:
    dagster_target = target(dagster)
    req = job_request()
    try:
        first = await dagster_target.trigger(req)
        await finished(dagster_target, first.ref)
        relaunched = gql(
            dagster,
            """mutation($parent: String!) {
              launchRunReexecution(reexecutionParams: {parentRunId: $parent,
                                                       strategy: ALL_STEPS}) {
                __typename ... on LaunchRunSuccess { run { runId } }
              }
            }""",
            parent=first.ref,
        )["launchRunReexecution"]
        again = await dagster_target.trigger(req)
    finally:
        await dagster_target.aclose()
    assert relaunched["__typename"] == "LaunchRunSuccess"
    runs = {r["runId"]: r for r in runs_tagged(dagster, req.trigger_id)}
    assert set(runs) == {first.ref, relaunched["run"]["runId"]}  # Dagster copied our tag
    assert runs[relaunched["run"]["runId"]]["rootRunId"] == first.ref
    assert again.ref == first.ref


async def test_a_trigger_id_already_on_a_run_of_another_job_is_a_conflict(
    dagster: Dagster,
) -> None:
    dagster_target = target(dagster)
    req = job_request()
    other = TriggerRequest(req.trigger_id, "test", "2026-11-23", 0,
                           {"assets": ["finance/revenue_summary"]})  # fmt: skip
    try:
        first = await dagster_target.trigger(req)
        with pytest.raises(TargetRejected, match=f"already tags run {first.ref} of job"):
            await dagster_target.trigger(other)
    finally:
        await dagster_target.aclose()
    assert len(runs_tagged(dagster, req.trigger_id)) == 1


async def test_assets_with_a_partition_materialize_that_partition(dagster: Dagster) -> None:
    dagster_target = target(dagster)
    req = request(assets=["finance/daily_revenue"], partition="2026-11-23")
    try:
        receipt = await dagster_target.trigger(req)
        done = await finished(dagster_target, receipt.ref)
    finally:
        await dagster_target.aclose()
    assert done.state == "succeeded", done.detail
    (run,) = runs_tagged(dagster, req.trigger_id)
    assert run["runId"] == receipt.ref
    assert run["jobName"] == "__ASSET_JOB"
    assert run["assetSelection"] == [{"path": ["finance", "daily_revenue"]}]
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["dagster/partition"] == "2026-11-23"
    materialized = gql(
        dagster,
        """query($runId: ID!) {
          runOrError(runId: $runId) {
            ... on Run { assetMaterializations { assetKey { path } partition } }
          }
        }""",
        runId=receipt.ref,
    )["runOrError"]["assetMaterializations"]
    assert materialized == [{"assetKey": {"path": ["finance", "daily_revenue"]},
                             "partition": "2026-11-23"}]  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"job": "no_such_job", "location": LOCATION},
            "launchRun: PipelineNotFoundError: Could not find Pipeline "
            "dagster_defs.py.__repository__.no_such_job",
        ),
        (
            {"job": "report_job", "location": "nowhere"},
            "PipelineNotFoundError: Could not find Pipeline nowhere.__repository__.report_job",
        ),
        (
            {
                "job": "report_job",
                "location": LOCATION,
                "run_config": {"ops": {"build_report": {"config": {"colour": "red"}}}},
            },
            r'RunConfigValidationInvalid: .*unexpected config entry "colour".*'
            r'Missing required config entry "run_date"',
        ),
        (
            {
                "job": "report_job",
                "location": LOCATION,
                "run_config": {"ops": {"build_report": {"config": {"run_date": 5}}}},
            },
            r"RunConfigValidationInvalid: Invalid scalar at path "
            r"root:ops:build_report:config:run_date",
        ),
        (
            {"assets": ["finance/no_such_asset"], "location": LOCATION},
            "no materializable asset finance/no_such_asset in code location 'dagster_defs.py'",
        ),
        (
            {"assets": ["finance/daily_revenue"]},
            "finance/daily_revenue are partitioned; the trigger needs a partition",
        ),
    ],
    ids=[
        "unknown-job",
        "unknown-location",
        "bad-config",
        "config-type",
        "unknown-asset",
        "no-partition",
    ],
)
async def test_bad_triggers_are_rejected_in_dagsters_own_words(
    dagster: Dagster, spec: dict[str, Any], message: str
) -> None:
    dagster_target = target(dagster)
    req = request(**spec)
    try:
        with pytest.raises(TargetRejected, match=message):
            await dagster_target.trigger(req)
    finally:
        await dagster_target.aclose()
    assert runs_tagged(dagster, req.trigger_id) == []


async def test_a_job_in_a_code_location_that_fails_to_load_is_transient(
    dagster: Dagster,
) -> None:
    dagster_target = target(dagster)
    try:
        with pytest.raises(TargetUnavailable) as job:
            await dagster_target.trigger(job_request(location=servers.DAGSTER_BROKEN_LOCATION))
        # Unknown assets may be in the broken location too, so they wait for it as well.
        with pytest.raises(TargetUnavailable) as assets:
            await dagster_target.trigger(request(assets=["finance/no_such_asset"]))
    finally:
        await dagster_target.aclose()
    assert "PipelineNotFoundError: Could not find Pipeline broken_location.py" in str(job.value)
    for error in (job.value, assets.value):
        assert "code location 'broken_location.py' failed to load" in str(error)
        assert "RuntimeError: this code location does not load" in str(error)


async def test_a_partition_dagster_cannot_parse_is_a_python_error_and_transient(
    dagster: Dagster,
) -> None:
    dagster_target = target(dagster)
    req = request(assets=["finance/daily_revenue"], partition="not-a-day")
    try:
        with pytest.raises(TargetUnavailable, match="PythonError: ValueError: time data"):
            await dagster_target.trigger(req)
    finally:
        await dagster_target.aclose()
    assert runs_tagged(dagster, req.trigger_id) == []


async def test_an_unreachable_server_is_transient(dagster: Dagster) -> None:
    dagster_target = target(dagster, url="http://127.0.0.1:9/graphql")
    try:
        with pytest.raises(TargetUnavailable, match="ConnectError"):
            await dagster_target.trigger(job_request())
    finally:
        await dagster_target.aclose()


async def test_a_url_that_is_not_the_graphql_endpoint_is_permanent(dagster: Dagster) -> None:
    dagster_target = target(dagster, url=dagster.server.url)
    try:
        with pytest.raises(TargetRejected, match="HTTP 405"):
            await dagster_target.trigger(job_request())
    finally:
        await dagster_target.aclose()


async def test_a_query_this_dagster_does_not_know_is_permanent_and_quoted(
    dagster: Dagster,
) -> None:
    dagster_target = target(dagster)
    try:
        with pytest.raises(
            TargetRejected, match="HTTP 400: GraphQL: Cannot query field 'noSuchField'"
        ):
            await dagster_target.query("{ noSuchField }", {})
    finally:
        await dagster_target.aclose()


async def test_the_status_of_an_unknown_run_is_permanent(dagster: Dagster) -> None:
    dagster_target = target(dagster)
    try:
        with pytest.raises(TargetRejected, match=r"RunNotFoundError: .*could not be found"):
            await dagster_target.status(str(uuid.uuid4()))
    finally:
        await dagster_target.aclose()


async def test_online_check_finds_what_would_fail(dagster: Dagster) -> None:
    dagster_target = target(dagster)
    job = {"job": "report_job", "location": LOCATION, "run_config": REPORT_CONFIG}
    try:
        good = await dagster_target.check(job)
        good_assets = await dagster_target.check(
            {"assets": ["finance/daily_revenue", "finance/revenue_summary"],
             "partition": "2026-11-23"}
        )  # fmt: skip
        unknown = await dagster_target.check({**job, "job": "no_such_job"})
        bad_config = await dagster_target.check({**job, "run_config": {}})
        broken = await dagster_target.check({**job, "location": servers.DAGSTER_BROKEN_LOCATION})
        early = await dagster_target.check(
            {"assets": ["finance/daily_revenue"], "partition": "2025-12-31"}
        )
        unreachable = target(dagster, url="http://127.0.0.1:9/graphql")
        try:
            down = await unreachable.check(job)
        finally:
            await unreachable.aclose()
    finally:
        await dagster_target.aclose()
    assert good == []
    assert good_assets == []
    assert unknown == [
        "dagster dagster: isPipelineConfigValid: PipelineNotFoundError: "
        "Could not find Pipeline dagster_defs.py.__repository__.no_such_job"
    ]
    assert len(bad_config) == 1
    assert bad_config[0].startswith("dagster dagster: run config of job 'report_job': ")
    assert 'Missing required config entry "ops"' in bad_config[0]
    assert "PipelineNotFoundError" in broken[0]
    assert "code location 'broken_location.py' failed to load" in broken[1]
    assert early == ["dagster dagster: asset finance/daily_revenue has no partition '2025-12-31'"]
    assert len(down) == 1
    assert "ConnectError" in down[0]
