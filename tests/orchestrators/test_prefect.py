"""The `prefect` target against a real Prefect server with a real runner."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from adapters.prefect import PrefectTarget
from broker.core.errors import TargetRejected, TargetUnavailable
from broker.core.settings import PrefectTarget as PrefectConfig
from broker.dispatch.target import Target, TriggerRequest
from tests.conftest import Cluster, wait_until
from tests.orchestrators import servers
from tests.orchestrators.conftest import Prefect
from tests.orchestrators.helpers import Patient, ask, trigger_record, wait_succeeded

pytestmark = [pytest.mark.orchestrators, pytest.mark.prefect]


def api(prefect: Prefect, method: str, path: str, **kwargs: Any) -> Any:
    auth = tuple(servers.PREFECT_AUTH.split(":", 1))
    return ask(method, f"{prefect.api}/{path}", auth=auth, **kwargs).json()


def runs_with_key(prefect: Prefect, key: str) -> list[dict[str, Any]]:
    runs = api(prefect, "POST", "flow_runs/filter",
               json={"flow_runs": {"tags": {"all_": ["baton"]}}, "limit": 200})  # fmt: skip
    return [r for r in runs if r.get("idempotency_key") == key]


def request(deployment: str = "report/daily", **parameters: Any) -> TriggerRequest:
    trigger_id = f"baton:test_{uuid.uuid4().hex[:8]}:2026-11-23:0"
    spec = {"deployment": deployment, "parameters": parameters or {"run_date": "2026-11-23"}}
    return TriggerRequest(trigger_id, "test", "2026-11-23", 0, spec)


def target(prefect: Prefect, **overrides: Any) -> Target:
    """The adapter; against the real server it rides out Prefect's own 503s."""
    adapter = PrefectTarget("prefect", PrefectConfig.model_validate(prefect.target(**overrides)))
    return adapter if "url" in overrides else Patient(adapter)


CONTRACT = """
name: {name}
partitioned: daily
when: {dataset}
trigger:
  target: prefect
  deployment: report/daily
  parameters:
    run_date: "{{{{ partition }}}}"
    rows: "{{{{ inputs['{dataset}'].metadata.row_count }}}}"
  tags: [revenue]
"""


def test_a_contract_starts_a_flow_run_with_its_parameters_and_it_completes(
    cluster: Cluster, prefect: Prefect
) -> None:
    name, dataset = f"report_{uuid.uuid4().hex[:6]}", f"warehouse.orders_{uuid.uuid4().hex[:6]}"
    cluster.write_contracts({"report.yaml": CONTRACT.format(name=name, dataset=dataset)})
    cluster.write_config("http://127.0.0.1:9", targets={"prefect": prefect.target()})
    cluster.run()
    cluster.cli("publish", dataset, "--partition", "2026-11-23", "--meta", "row_count=12")

    trigger = wait_succeeded(cluster, name)
    assert trigger["id"] == f"baton:{name}:2026-11-23:0"
    run = api(prefect, "GET", f"flow_runs/{trigger['downstream_ref']}")
    assert run["parameters"] == {"run_date": "2026-11-23", "rows": 12}
    assert run["idempotency_key"] == trigger["id"]
    assert set(run["tags"]) >= {"revenue", "baton"}
    assert trigger["downstream_url"].endswith(f"/runs/flow-run/{run['id']}")

    def completed() -> bool:
        state = api(prefect, "GET", f"flow_runs/{run['id']}")["state"]["type"]
        assert state not in ("FAILED", "CRASHED"), state
        return bool(state == "COMPLETED")

    wait_until(completed, timeout=60, every=0.5)


async def test_the_same_trigger_dispatched_twice_makes_one_run(prefect: Prefect) -> None:
    prefect_target = target(prefect)
    req = request(run_date="2026-11-23")
    try:
        first = await prefect_target.trigger(req)
        again = await prefect_target.trigger(req)
        status = await prefect_target.status(first.ref)
    finally:
        await prefect_target.aclose()
    assert again.ref == first.ref
    assert len(runs_with_key(prefect, req.trigger_id)) == 1
    assert status.state in ("queued", "running", "succeeded")


async def test_a_key_already_used_by_another_deployment_of_the_flow_is_a_conflict(
    prefect: Prefect,
) -> None:
    prefect_target = target(prefect)
    req = request("report/daily", run_date="2026-11-23")
    other = TriggerRequest(req.trigger_id, "test", "2026-11-23", 0,
                           {**req.spec, "deployment": "report/backfill"})  # fmt: skip
    try:
        first = await prefect_target.trigger(req)
        with pytest.raises(TargetRejected, match=f"flow run {first.ref} of another deployment"):
            await prefect_target.trigger(other)
    finally:
        await prefect_target.aclose()


@pytest.mark.parametrize(
    ("deployment", "parameters", "message"),
    [
        ("report/nope", {"run_date": "x"}, "deployment 'report/nope' not found"),
        ("report/daily", {"run_date": "x", "colour": "red"}, "takes no parameter 'colour'"),
        ("report/daily", {"run_date": "x", "rows": "many"}, "HTTP 409"),
        ("reportdaily", {"run_date": "x"}, "neither 'flow-name/deployment-name' nor an id"),
    ],
)
async def test_bad_triggers_are_rejected_with_prefects_own_words(
    prefect: Prefect, deployment: str, parameters: dict[str, Any], message: str
) -> None:
    prefect_target = target(prefect)
    try:
        with pytest.raises(TargetRejected, match=message):
            await prefect_target.trigger(request(deployment, **parameters))
    finally:
        await prefect_target.aclose()


async def test_bad_credentials_are_permanent(prefect: Prefect) -> None:
    prefect_target = target(prefect, auth_string="baton:wrong")
    try:
        with pytest.raises(TargetRejected, match="HTTP 401"):
            await prefect_target.trigger(request(run_date="2026-11-23"))
    finally:
        await prefect_target.aclose()


async def test_an_unreachable_server_is_transient(prefect: Prefect) -> None:
    prefect_target = target(prefect, url="http://127.0.0.1:9/api")
    try:
        with pytest.raises(TargetUnavailable):
            await prefect_target.trigger(request(run_date="2026-11-23"))
    finally:
        await prefect_target.aclose()


async def test_online_check_names_missing_and_unknown_parameters(prefect: Prefect) -> None:
    prefect_target = target(prefect)
    try:
        good = await prefect_target.check({"deployment": "report/daily",
                                           "parameters": {"run_date": "x"}})  # fmt: skip
        bad = await prefect_target.check({"deployment": "report/daily",
                                          "parameters": {"colour": "red"}})  # fmt: skip
        missing = await prefect_target.check({"deployment": "report/gone", "parameters": {}})
    finally:
        await prefect_target.aclose()
    assert good == []
    assert any("takes no parameter 'colour'" in p for p in bad)
    assert any("needs parameter 'run_date'" in p for p in bad)
    assert missing == ["prefect prefect: deployment 'report/gone' not found"]


def test_an_unknown_deployment_is_dead_lettered_at_once_in_prefects_words(
    cluster: Cluster, prefect: Prefect
) -> None:
    name = f"lost_{uuid.uuid4().hex[:6]}"
    contract = f"""
name: {name}
partitioned: daily
when: feeds.{name}
trigger: {{target: prefect, deployment: report/gone, parameters: {{run_date: x}}}}
"""
    cluster.write_contracts({"lost.yaml": contract})
    cluster.write_config("http://127.0.0.1:9", targets={"prefect": prefect.target()})
    cluster.run()
    cluster.cli("publish", f"feeds.{name}", "--partition", "2026-11-23")
    trigger_id = f"baton:{name}:2026-11-23:0"
    record = wait_until(lambda: (r := trigger_record(cluster, trigger_id))
                        and r["state"] == "failed" and r)  # fmt: skip
    assert record["attempts"] == 1
    assert record["last_error"] == "prefect prefect: deployment 'report/gone' not found"
    dead = json.loads(cluster.cli("dlq", "list", "--json").stdout)
    assert [d["trigger_id"] for d in dead] == [trigger_id]
