"""Pausing a contract, as an operator would with `baton pause` / `baton resume`: while
paused inputs are recorded and nothing fires (not live matching, not a backfill); on
resume what completed meanwhile fires once, or with --no-fire is marked done. Real
`baton run`, real Redis, real sink; the commands go through the API with a token."""

from __future__ import annotations

import json

import httpx

from tests.conftest import Cluster, wait_until

CONTRACT = """
name: report
partitioned: daily
when: {all_of: [warehouse.orders, warehouse.fx]}
trigger: {target: hook}
"""
OPERATOR = "tok-oncall"
PRODUCER = "tok-loader"


def start(cluster: Cluster) -> str:
    sink = cluster.sink()
    cluster.write_contracts({"report.yaml": CONTRACT})
    cluster.write_config(
        sink.url,
        producers=[{"name": "loader", "token": PRODUCER, "datasets": ["warehouse.*"]}],
        principals=[{"name": "oncall", "token": OPERATOR, "role": "operator"}],
    )
    cluster.run()
    return sink.url


def complete(cluster: Cluster, day: str) -> None:
    events = [{"dataset": d, "partition": day, "event_id": f"{d}/{day}"}
              for d in ("warehouse.orders", "warehouse.fx")]  # fmt: skip
    answer = httpx.post(cluster.api + "/v1/events", json={"events": events}, timeout=5,
                        headers={"Authorization": f"Bearer {PRODUCER}"})  # fmt: skip
    assert answer.status_code == 202


def viewer_get(cluster: Cluster, path: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {OPERATOR}"}
    return httpx.get(cluster.api + path, headers=headers, timeout=5)


def both_recorded(cluster: Cluster, day: str) -> bool:
    report = viewer_get(cluster, f"/v1/contracts/report/partitions/{day}").json()
    return all(i["state"] == "satisfied" for i in report["inputs"])


def trigger_ids(cluster: Cluster) -> set[str]:
    return {t["id"] for t in viewer_get(cluster, "/v1/triggers").json()["triggers"]}


def test_a_paused_contract_records_inputs_and_fires_what_completed_once_on_resume(
    cluster: Cluster,
) -> None:
    start(cluster)
    paused = cluster.cli("pause", "report", "--reason", "warehouse migration", "--token", OPERATOR)
    assert "report paused (by oncall" in paused.stdout
    complete(cluster, "2026-10-01")
    wait_until(lambda: both_recorded(cluster, "2026-10-01"))
    # Recording and firing are one script: once both are recorded, a firing would exist.
    assert trigger_ids(cluster) == set()
    listed = viewer_get(cluster, "/v1/contracts").json()["paused"]
    assert (
        listed["report"]["by"] == "oncall" and listed["report"]["reason"] == "warehouse migration"
    )

    resumed = cluster.cli("resume", "report", "--token", OPERATOR)
    assert "fired baton:report:2026-10-01:0" in resumed.stdout
    wait_until(lambda: "baton:report:2026-10-01:0" in trigger_ids(cluster))
    again = cluster.cli("resume", "report", "--token", OPERATOR)
    assert "(it was not paused)" in again.stdout and "fired" not in again.stdout
    assert trigger_ids(cluster) == {"baton:report:2026-10-01:0"}

    actions = [e["action"] for e in json.loads(cluster.cli("audit", "--json", "--token",
                                                           OPERATOR).stdout)]  # fmt: skip
    assert actions[:3] == ["contract.resume", "contract.resume", "contract.pause"]


def test_resuming_without_firing_marks_what_completed_done_and_a_restatement_still_fires(
    cluster: Cluster,
) -> None:
    start(cluster)
    cluster.cli("pause", "report", "--token", OPERATOR)
    complete(cluster, "2026-10-02")
    wait_until(lambda: both_recorded(cluster, "2026-10-02"))
    resumed = cluster.cli("resume", "report", "--no-fire", "--token", OPERATOR)
    assert "skipped 2026-10-02 (completed while paused; marked done)" in resumed.stdout
    assert trigger_ids(cluster) == set()
    restated = {"dataset": "warehouse.orders", "partition": "2026-10-02", "event_id": "o/new"}
    httpx.post(cluster.api + "/v1/events", json=restated, timeout=5,
               headers={"Authorization": f"Bearer {PRODUCER}"})  # fmt: skip
    wait_until(lambda: trigger_ids(cluster) == {"baton:report:2026-10-02:1"})  # new data fires


def test_a_backfill_of_a_paused_contract_waits_and_goes_on_after_resume(cluster: Cluster) -> None:
    start(cluster)
    cluster.cli("pause", "report", "--token", OPERATOR)
    headers = {"Authorization": f"Bearer {OPERATOR}"}
    body = {"contract": "report", "from": "2026-10-05", "to": "2026-10-06", "force": True}
    made = httpx.post(cluster.api + "/v1/backfills", json=body, headers=headers, timeout=5)
    assert made.status_code == 201
    backfill = made.json()["id"]
    wait_until(lambda: viewer_get(cluster, f"/v1/backfills/{backfill}").json()["waiting"])
    status = viewer_get(cluster, f"/v1/backfills/{backfill}").json()
    assert status["waiting"] == "the contract is paused"
    assert (status["fired"], status["done"]) == (0, 0) and trigger_ids(cluster) == set()
    cluster.cli("resume", "report", "--token", OPERATOR)
    wait_until(lambda: viewer_get(cluster, f"/v1/backfills/{backfill}").json()["fired"] == 2)
    assert trigger_ids(cluster) == {"baton:report:2026-10-05:0", "baton:report:2026-10-06:0"}


def test_pausing_needs_an_operator_and_an_unknown_contract_is_named(cluster: Cluster) -> None:
    start(cluster)
    refused = cluster.cli("pause", "report", "--token", PRODUCER, check=False)
    assert refused.returncode == 1
    assert "HTTP 403: producer 'loader' may only publish events" in refused.stderr
    unknown = cluster.cli("pause", "nope", "--token", OPERATOR, check=False)
    assert unknown.returncode == 1 and "no contract named 'nope' is loaded" in unknown.stderr
    assert "Traceback" not in refused.stderr + unknown.stderr


def test_commands_that_go_straight_to_redis_are_audited_as_the_cli_user(cluster: Cluster) -> None:
    start(cluster)
    cluster.cli("backfill", "report", "--from", "2026-10-07", "--to", "2026-10-07", "--force",
                "--detach")  # fmt: skip
    wait_until(lambda: "baton:report:2026-10-07:0" in trigger_ids(cluster))
    entries = json.loads(cluster.cli("audit", "--json", "--token", OPERATOR).stdout)
    [started] = [e for e in entries if e["action"] == "backfill.start"]
    assert started["actor"].startswith("cli:") and started["via"] == "cli"
    assert started["detail"] == "report 2026-10-07..2026-10-07 order=newest-first force=True"
