"""Publishing from Dagster: the `baton_publisher` sensor of `dagster_defs.py`, live.

An upstream run materializes one day of `warehouse/orders_daily`; the sensor (in the
`dagster dev` daemon) publishes it to the Baton on `servers.BATON_PORT`, whose contract
starts `report_job` for that day with the row count from the event's metadata.

The Dagster server is the session's, so each test takes a day no other test uses and a
contract of its own: the sensor publishes every test's materializations to whichever
Baton listens on the port at the time. What would stall the shared sensor (a refusal) is
tried on a throwaway Dagster instance instead, ticking a sensor by hand.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cluster, http_up, stream_events, wait_until
from tests.orchestrators import envs, servers
from tests.orchestrators.conftest import Dagster
from tests.orchestrators.helpers import trigger_record, wait_succeeded
from tests.orchestrators.test_dagster import LOCATION, gql, runs_tagged

pytestmark = [pytest.mark.orchestrators, pytest.mark.dagster]

ASSET = ["warehouse", "orders_daily"]
DATASET = "warehouse.orders_daily"
REPOSITORY = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__"}
SENSOR = REPOSITORY | {"sensorName": "baton_publisher"}

CONTRACT = """
name: {name}
partitioned: daily
when: warehouse.orders_daily
trigger:
  target: dagster
  job: report_job
  location: dagster_defs.py
  run_config:
    ops:
      build_report:
        config:
          run_date: "{{{{ partition }}}}"
          rows: "{{{{ inputs['warehouse.orders_daily'].metadata.row_count }}}}"
"""


def unique_day() -> str:
    """A day of orders_daily's partitions (from 2026-01-01, up to yesterday) no other
    test of the session takes, most likely."""
    span = min(300, (date.today() - date(2026, 1, 1)).days)
    return (date(2026, 1, 1) + timedelta(days=uuid.uuid4().int % span)).isoformat()


def rows_for(day: str) -> int:
    """What orders_daily reports as `dagster/row_count` (dagster_defs.rows_for)."""
    return int(day.replace("-", "")) % 100_000


def deploy(cluster: Cluster, dagster: Dagster) -> str:
    """Configure a Baton on the port the sensor publishes to; returns the contract name."""
    name = f"orders_report_{uuid.uuid4().hex[:8]}"
    cluster.port = servers.BATON_PORT
    cluster.write_contracts({"orders.yaml": CONTRACT.format(name=name)})
    cluster.write_config(
        "http://127.0.0.1:9",
        targets={"dagster": dagster.target()},
        producers=[servers.baton_producer(["warehouse.*"])],
    )
    return name


def sensor(dagster: Dagster) -> dict[str, Any]:
    query = """query($selector: SensorSelector!) {
      sensorOrError(sensorSelector: $selector) {
        __typename
        ... on Sensor { sensorState {
          status
          typeSpecificData { ... on SensorData { lastCursor } }
          ticks(limit: 20) { status timestamp skipReason error { message } }
        } }
      }
    }"""
    found: dict[str, Any] = gql(dagster, query, selector=SENSOR)["sensorOrError"]
    assert found["__typename"] == "Sensor", found
    state: dict[str, Any] = found["sensorState"]
    return state


def sensor_cursor(dagster: Dagster, since: float) -> str | None:
    """The sensor's cursor: None until its first tick (which starts it at the present).
    Ticks that failed since `since` fail the test (earlier ones may be another test's:
    the fault tests take the code server away, and Dagster retries a tick that could not
    reach it)."""
    state = sensor(dagster)
    assert state["status"] == "RUNNING", state
    failed = [t["error"] for t in state["ticks"]
              if t["status"] == "FAILURE" and t["timestamp"] > since
              and "DagsterUserCodeUnreachableError" not in t["error"]["message"]]  # fmt: skip
    assert not failed, failed
    cursor: str | None = (state["typeSpecificData"] or {}).get("lastCursor")
    return cursor


def ticks_since(dagster: Dagster, since: float, text: str) -> list[str]:
    reasons = [t["skipReason"] or "" for t in sensor(dagster)["ticks"] if t["timestamp"] > since]
    return [r for r in reasons if text in r]


def materialize(dagster: Dagster, day: str) -> str:
    """Launch a run of orders_daily for `day` and wait for it to succeed; its run id."""
    selector = REPOSITORY | {"jobName": "__ASSET_JOB", "assetSelection": [{"path": ASSET}]}
    launched = gql(
        dagster,
        """mutation($params: ExecutionParams!) {
          launchRun(executionParams: $params) {
            __typename ... on LaunchRunSuccess { run { runId } } ... on Error { message }
          }
        }""",
        params={
            "selector": selector,
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": day}]},
        },
    )["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id: str = launched["run"]["runId"]
    assert finished(dagster, run_id) == "SUCCESS"
    return run_id


def reexecute(dagster: Dagster, run_id: str) -> str:
    launched = gql(
        dagster,
        """mutation($parent: String!) {
          launchRunReexecution(reexecutionParams: {parentRunId: $parent, strategy: ALL_STEPS}) {
            __typename ... on LaunchRunSuccess { run { runId } } ... on Error { message }
          }
        }""",
        parent=run_id,
    )["launchRunReexecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    again: str = launched["run"]["runId"]
    assert finished(dagster, again) == "SUCCESS"
    return again


def finished(dagster: Dagster, run_id: str) -> str:
    query = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"

    def status() -> str | None:
        state: str = gql(dagster, query, id=run_id)["runOrError"]["status"]
        return state if state in ("SUCCESS", "FAILURE", "CANCELED") else None

    done: str = wait_until(status, timeout=120, every=0.5)
    return done


def stream(cluster: Cluster) -> list[dict[str, Any]]:
    """The events in Baton's stream, whole."""
    return stream_events(cluster.redis_url)


def baton_events(cluster: Cluster, day: str) -> list[dict[str, Any]]:
    return [e for e in stream(cluster) if e["dataset"] == DATASET and e.get("partition") == day]


def spooled(spool: Path, event_id: str) -> bool:
    for path in spool.glob("[0-9]*.json"):
        try:
            if any(e["event_id"] == event_id for e in json.loads(path.read_text())):
                return True
        except FileNotFoundError:
            continue  # sent meanwhile
    return False


def event_id(run_id: str, day: str) -> str:
    return f"dagster/{run_id}/warehouse/orders_daily/{day}"


def triggers_of(cluster: Cluster, contract: str) -> list[str]:
    rows = json.loads(cluster.cli("triggers", "--json").stdout)
    return sorted(r["id"] for r in rows if r["contract"] == contract)


def report_config(day: str) -> dict[str, Any]:
    return {"ops": {"build_report": {"config": {"run_date": day, "rows": rows_for(day)}}}}


def rewind(dagster: Dagster, cursor: str) -> None:
    """Set the sensor's cursor back and see a tick publish the same event again.

    A tick in flight when the cursor is set saves its own cursor over it, so the
    cursor is set again until a tick has read it."""
    mutation = """mutation($selector: SensorSelector!, $cursor: String) {
      setSensorCursor(sensorSelector: $selector, cursor: $cursor) { __typename }
    }"""
    for _ in range(4):
        since = time.time()
        gql(dagster, mutation, selector=SENSOR, cursor=cursor)
        deadline = since + 20
        while time.time() < deadline:
            if ticks_since(dagster, since, "0 accepted, 1 duplicate(s)"):
                return
            time.sleep(1)
    raise AssertionError(f"the sensor did not publish again from cursor {cursor}")


def test_a_materialized_partition_is_published_and_starts_the_downstream_job_once(
    cluster: Cluster, dagster: Dagster
) -> None:
    started = time.time()
    contract, day = deploy(cluster, dagster), unique_day()
    cluster.run()
    wait_until(lambda: sensor_cursor(dagster, started), timeout=90, every=1)

    run_id = materialize(dagster, day)

    done = wait_succeeded(cluster, contract, timeout=120)
    assert done["id"] == f"baton:{contract}:{day}:0"
    (downstream,) = runs_tagged(dagster, done["id"])
    assert downstream["jobName"] == "report_job"
    assert downstream["runConfig"] == report_config(day)
    (event,) = baton_events(cluster, day)
    rows = rows_for(day)
    assert event["event_id"] == event_id(run_id, day)
    assert event["status"] == "success"
    assert event["producer"] == "dagster://warehouse/orders_daily"
    assert event["metadata"] == {"dagster/row_count": rows, "row_count": rows, "loaded": day}
    assert triggers_of(cluster, contract) == [done["id"]]


def test_a_materialization_while_baton_is_down_is_spooled_and_fires_once_baton_is_back(
    cluster: Cluster, dagster: Dagster
) -> None:
    started = time.time()
    contract, day = deploy(cluster, dagster), unique_day()
    assert not http_up(cluster.api + "/healthz"), "something else listens on BATON_PORT"
    wait_until(lambda: sensor_cursor(dagster, started), timeout=90, every=1)
    spool = dagster.server.home / "baton-spool"
    since = time.time()

    run_id = materialize(dagster, day)  # succeeds: the run never waits for Baton

    wait_until(lambda: spooled(spool, event_id(run_id, day)), timeout=90, every=1)
    wait_until(lambda: ticks_since(dagster, since, "1 spooled (Baton unavailable)"))
    cluster.run()
    # The sensor sends the spool on its next tick; a flush by hand may race it, and
    # whichever is second sends duplicates.
    python = str(envs.ensure("dagster") / "python")
    flush = subprocess.run(
        [python, "-m", "adapters.publish", "flush"], env=dagster.server.env,
        cwd=dagster.server.home, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert flush.returncode == 0, flush.stdout + flush.stderr
    assert "0 file(s) left" in flush.stdout

    done = wait_succeeded(cluster, contract, timeout=120)
    assert done["id"] == f"baton:{contract}:{day}:0"
    (downstream,) = runs_tagged(dagster, done["id"])
    assert downstream["runConfig"] == report_config(day)
    assert [e["event_id"] for e in baton_events(cluster, day)] == [event_id(run_id, day)]
    assert not spooled(spool, event_id(run_id, day))
    assert triggers_of(cluster, contract) == [done["id"]]


def test_a_record_read_again_is_a_duplicate_and_a_re_execution_a_restatement(
    cluster: Cluster, dagster: Dagster
) -> None:
    started = time.time()
    contract, day = deploy(cluster, dagster), unique_day()
    cluster.run()
    before = wait_until(lambda: sensor_cursor(dagster, started), timeout=90, every=1)
    run_id = materialize(dagster, day)
    first = wait_succeeded(cluster, contract, timeout=120)

    rewind(dagster, before)  # as if the sensor had crashed before saving its cursor
    assert triggers_of(cluster, contract) == [first["id"]]
    assert len(baton_events(cluster, day)) == 1

    again = reexecute(dagster, run_id)
    second_id = f"baton:{contract}:{day}:1"
    wait_until(
        lambda: (r := trigger_record(cluster, second_id)) and r["state"] == "succeeded",
        timeout=120,
        every=1,
    )
    assert [e["event_id"] for e in baton_events(cluster, day)] == [
        event_id(run_id, day),
        event_id(again, day),
    ]
    assert triggers_of(cluster, contract) == [first["id"], second_id]
    assert len(runs_tagged(dagster, first["id"])) == 1
    assert len(runs_tagged(dagster, second_id)) == 1


# Run in Dagster's venv on a throwaway instance: the sensor's own ticks, by hand.
BY_HAND = """
import json
import dagster as dg
from adapters.publish.dagster import baton_sensor

@dg.asset(key_prefix="warehouse")
def wide():
    return dg.MaterializeResult(metadata={"dagster/row_count": 7, "preview": "x" * 70_000})

@dg.asset(key_prefix="secret")
def ledger():
    return 1

def tick(sensor, instance, cursor):
    try:
        result = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor))
    except Exception as exc:
        return {"error": str(exc)}
    return {"cursor": result.cursor, "reason": result.skip_message}

with dg.instance_for_test() as instance:
    dg.materialize([wide, ledger], instance=instance)
    every = tick(baton_sensor(), instance, "0")
    scoped = tick(baton_sensor(dataset_for={"secret/ledger": None}), instance, "0")
    print(json.dumps({"every": every, "scoped": scoped}))
"""


def test_a_refused_event_fails_the_tick_and_metadata_too_large_for_baton_is_left_out(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.write_contracts({})
    cluster.write_config("http://127.0.0.1:9", producers=[servers.baton_producer(["warehouse.*"])])
    cluster.run()
    spool = tmp_path / "spool"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "BATON_URL": cluster.api,
           "BATON_TOKEN": servers.BATON_TOKEN, "BATON_SPOOL_DIR": str(spool)}  # fmt: skip
    python = str(envs.with_baton("dagster") / "python")
    done = subprocess.run([python, "-c", BY_HAND], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    ticks = json.loads(done.stdout.splitlines()[-1])

    # secret.ledger is outside the token's scope: nothing is written, the cursor stays
    assert "refused 2 event(s): HTTP 403" in ticks["every"]["error"]
    assert "secret.ledger" in ticks["every"]["error"]
    assert ticks["scoped"]["reason"] == "published to Baton: 1 accepted, 0 duplicate(s)"
    assert int(ticks["scoped"]["cursor"]) > 0
    (stored,) = stream(cluster)
    assert stored["dataset"] == "warehouse.wide"
    assert stored["metadata"] == {"dagster/row_count": 7, "row_count": 7}
    assert not list(spool.glob("*.json"))
