"""Publishing from Prefect for real: upstream flow runs announce their dataset through
Baton's state hooks (or `publish()` in their body), and Baton starts the downstream.

The flows are in `prefect_flows.py`; the runner's environment points them at the Baton
each test runs on `servers.BATON_PORT`."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cluster, stream_events, wait_until
from tests.orchestrators import envs, servers
from tests.orchestrators.conftest import Prefect
from tests.orchestrators.helpers import wait_succeeded
from tests.orchestrators.test_airflow import unique_day
from tests.orchestrators.test_prefect import api, runs_with_key

pytestmark = [pytest.mark.orchestrators, pytest.mark.prefect]

ORDERS = "warehouse.orders_prefect"
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
HOOK_DONE = f"Hook 'publish_to_baton({ORDERS})' finished running successfully"

DOWNSTREAM = """
name: {name}
partitioned: daily
when: warehouse.orders_prefect
trigger:
  target: prefect
  deployment: report/daily
  parameters:
    run_date: "{{{{ partition }}}}"
    rows: "{{{{ inputs['warehouse.orders_prefect'].metadata.row_count }}}}"
"""


def start_baton(cluster: Cluster, prefect: Prefect) -> str:
    name = f"after_{uuid.uuid4().hex[:6]}"
    cluster.port = servers.BATON_PORT  # where the flows publish
    cluster.write_contracts({"down.yaml": DOWNSTREAM.format(name=name)})
    cluster.write_config(
        "http://127.0.0.1:9",
        targets={"prefect": prefect.target()},
        producers=[servers.baton_producer(["warehouse.*"])],
    )
    cluster.run()
    return name


def run_upstream(prefect: Prefect, deployment: str, **parameters: Any) -> dict[str, Any]:
    """A flow run of `deployment`, created as a user would, once it has ended Completed."""
    servers.prefect_deployment_ready(prefect.server, deployment)
    found = api(prefect, "GET", f"deployments/name/{deployment}")
    body = {"parameters": parameters, "idempotency_key": uuid.uuid4().hex}
    run = api(prefect, "POST", f"deployments/{found['id']}/create_flow_run", json=body)

    def ended() -> dict[str, Any] | None:
        now: dict[str, Any] = api(prefect, "GET", f"flow_runs/{run['id']}")
        return now if now["state"]["type"] in FINAL else None

    done: dict[str, Any] = wait_until(ended, timeout=120, every=1)
    assert done["state"]["type"] == "COMPLETED", done["state"]
    return done


def events(cluster: Cluster, day: str, dataset: str = ORDERS) -> list[dict[str, Any]]:
    found = stream_events(cluster.redis_url)
    return [e for e in found if e["dataset"] == dataset and e.get("partition") == day]


def run_logs(prefect: Prefect, run_id: str) -> list[str]:
    """What the flow run and its tasks logged, as the Prefect UI shows it."""
    body = {"logs": {"flow_run_id": {"any_": [run_id]}}, "sort": "TIMESTAMP_ASC", "limit": 200}
    return [line["message"] for line in api(prefect, "POST", "logs/filter", json=body)]


def logged(prefect: Prefect, run_id: str, text: str) -> list[str]:
    return [line for line in run_logs(prefect, run_id) if text in line]


def downstream_runs(cluster: Cluster, prefect: Prefect, name: str, day: str) -> list[Any]:
    triggers = json.loads(cluster.cli("triggers", "--json").stdout)
    assert [t["id"] for t in triggers if t["contract"] == name] == [f"baton:{name}:{day}:0"]
    return runs_with_key(prefect, f"baton:{name}:{day}:0")


def spooled(spool: Path, event_id: str) -> list[Path]:
    found = []
    for path in spool.glob("*.json"):
        try:
            if event_id in path.read_text():
                found.append(path)
        except FileNotFoundError:
            continue  # sent meanwhile
    return found


def test_a_completed_flow_run_publishes_through_its_hook_and_baton_starts_the_downstream(
    cluster: Cluster, prefect: Prefect
) -> None:
    name, day = start_baton(cluster, prefect), unique_day()
    run = run_upstream(prefect, "load-orders/daily", run_date=day, rows=42)

    wait_succeeded(cluster, name, timeout=90)
    [event] = events(cluster, day)
    assert event["event_id"] == f"prefect/{run['id']}/{ORDERS}/{day}"
    assert event["metadata"] == {"row_count": 42}  # the flow's return value
    assert event["producer"] == "prefect://load-orders"
    [down] = downstream_runs(cluster, prefect, name, day)
    assert down["parameters"] == {"run_date": day, "rows": 42}
    explained = json.loads(cluster.cli("explain", name, day, "--json").stdout)
    assert event["event_id"] in json.dumps(explained)


def test_while_baton_is_down_the_flow_run_completes_and_its_event_waits_in_the_spool(
    cluster: Cluster, prefect: Prefect
) -> None:
    day = unique_day()
    run = run_upstream(prefect, "load-orders/daily", run_date=day, rows=7)  # no Baton yet
    event_id = f"prefect/{run['id']}/{ORDERS}/{day}"
    spool = Path(prefect.server.env["BATON_SPOOL_DIR"])
    [waiting] = wait_until(lambda: spooled(spool, event_id), timeout=60)
    assert json.loads(waiting.read_text())[0]["metadata"] == {"row_count": 7}
    warning = f"is unavailable: {ORDERS} {day} waits in {spool}"
    assert wait_until(lambda: logged(prefect, run["id"], warning))

    name = start_baton(cluster, prefect)
    flush = subprocess.run(
        [str(envs.with_baton("prefect") / "python"), "-m", "adapters.publish", "flush"],
        env=prefect.server.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert flush.returncode == 0, flush.stdout + flush.stderr

    wait_succeeded(cluster, name, timeout=90)
    assert [e["event_id"] for e in events(cluster, day)] == [event_id]
    [down] = downstream_runs(cluster, prefect, name, day)
    assert down["parameters"] == {"run_date": day, "rows": 7}
    assert spooled(spool, event_id) == []


def test_a_retried_flow_run_publishes_its_dataset_once(cluster: Cluster, prefect: Prefect) -> None:
    """It publishes from its body, fails, publishes again on its retry, and its hook
    publishes once more when it completes: one event id, so one event and one run."""
    name, day = start_baton(cluster, prefect), unique_day()
    run = run_upstream(prefect, "load-orders-retried/daily", run_date=day, rows=5)
    assert run["run_count"] == 2

    wait_until(lambda: logged(prefect, run["id"], HOOK_DONE), timeout=60)
    event_id = f"prefect/{run['id']}/{ORDERS}/{day}"
    assert len(logged(prefect, run["id"], f"Baton: published {ORDERS} {day}")) == 1
    assert len(logged(prefect, run["id"], f"{ORDERS} {day} was already published")) == 2
    wait_succeeded(cluster, name, timeout=90)
    assert [e["event_id"] for e in events(cluster, day)] == [event_id]
    [down] = downstream_runs(cluster, prefect, name, day)
    assert down["parameters"] == {"run_date": day, "rows": 5}


def test_a_task_hook_publishes_with_the_flow_runs_id_and_a_bad_template_only_logs(
    cluster: Cluster, prefect: Prefect
) -> None:
    name, day = start_baton(cluster, prefect), unique_day()
    run = run_upstream(prefect, "load-orders-tasks/daily", run_date=day)

    wait_succeeded(cluster, name, timeout=90)
    [event] = events(cluster, day)
    assert event["event_id"] == f"prefect/{run['id']}/{ORDERS}/{day}"
    assert event["producer"] == "prefect://load-orders-tasks/extract"
    assert event["metadata"] == {"row_count": len(day)}  # the task's return value
    [down] = downstream_runs(cluster, prefect, name, day)
    assert down["parameters"] == {"run_date": day, "rows": len(day)}
    problem = (
        "Baton: nothing published: the partition template '{run_date}' names the "
        "parameter 'run_date', which this run does not have (its parameters: day)"
    )
    assert wait_until(lambda: logged(prefect, run["id"], problem))
    assert events(cluster, day, "warehouse.never_prefect") == []
