"""Contract owners: `check.require_owner` refuses an unowned contract, and alerts about a
contract go to its owner's sinks when the config has some, else to the global ones
(real Redis, Baton processes and sinks)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from broker.core.errors import ConfigError
from broker.core.settings import load_settings
from broker.embedded_redis import free_port
from tests.conftest import Cluster, Sink, wait_until

OWNED = "name: owned\nowner: analytics\npartitioned: daily\nwhen: a\ntrigger: {target: hook}\n"
UNOWNED = "name: unowned\npartitioned: daily\nwhen: a\ntrigger: {target: hook}\n"
STRANGER = "name: stranger\nowner: nobody\npartitioned: daily\nwhen: a\ntrigger: {target: hook}\n"

REQUIRE = {"require_owner": True}
OWNERS = {"analytics": {"alerts": []}, "finance": {"alerts": []}}


def sink_config(sink: Sink, path: str) -> list[dict[str, str]]:
    return [{"kind": "webhook", "url": sink.url + path, "secret": "s3cret"}]


def received(sink: Sink, path: str) -> list[dict[str, Any]]:
    return [d["body"] for d in sink.deliveries() if d["path"] == path]


# -- baton check ---------------------------------------------------------------------


def test_check_with_require_owner_names_the_unowned_contract_and_exits_1(
    cluster: Cluster,
) -> None:
    folder = cluster.write_contracts({"two.yaml": f"{OWNED}---\n{UNOWNED}"})
    cluster.write_config("http://127.0.0.1:9", check=REQUIRE)
    result = cluster.cli("check", check=False)
    assert result.returncode == 1
    # the second document's `name:` line, as there is no `owner:` to point at
    expected = f"{folder / 'two.yaml'}:7: owner: required by this Baton's config"
    assert result.stderr.strip().startswith(expected)
    assert len(result.stderr.strip().splitlines()) == 1  # the owned one passes
    assert "contracts rejected" in cluster.cli("run", check=False).stderr  # every load


def test_check_with_require_owner_passes_when_every_contract_has_one(cluster: Cluster) -> None:
    cluster.write_contracts({"owned.yaml": OWNED})
    cluster.write_config("http://127.0.0.1:9", check=REQUIRE)
    assert "1 contract OK" in cluster.cli("check").stdout
    cluster.write_contracts({"unowned.yaml": UNOWNED})
    cluster.write_config("http://127.0.0.1:9")  # off by default
    assert cluster.cli("check").returncode == 0


def test_check_refuses_an_owner_the_config_does_not_list(cluster: Cluster) -> None:
    folder = cluster.write_contracts({"owned.yaml": OWNED, "stranger.yaml": STRANGER})
    cluster.write_config("http://127.0.0.1:9", check=REQUIRE, owners=OWNERS)
    result = cluster.cli("check", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"{folder / 'stranger.yaml'}:2: owner: unknown owner 'nobody' (known: analytics, finance)"
    )


def test_owner_settings_take_environment_overrides_and_refuse_unknown_fields(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "baton.yaml"
    config.write_text(
        "owners:\n  analytics:\n    alerts: [{url: 'https://a.example/${HOOK}', secret: '${S}'}]\n"
    )
    monkeypatch.setenv("BATON_CHECK__REQUIRE_OWNER", "true")
    settings = load_settings(config, {"HOOK": "x", "S": "y"})
    assert settings.check.require_owner
    [sink] = settings.owners["analytics"].alerts
    assert sink.url == "https://a.example/x" and sink.secret is not None
    config.write_text("owners: {analytics: {alert: []}}\n")
    with pytest.raises(ConfigError, match=r"owners\.analytics\.alert: Extra inputs"):
        load_settings(config, {})


# -- alert routing -------------------------------------------------------------------

LATE = """
name: {name}
owner: {owner}
partitioned: daily
deadline: "+1h"
when: {{all_of: [warehouse.orders, warehouse.fx]}}
trigger: {{target: hook}}
"""


def test_a_missed_deadline_goes_to_its_owners_sink_else_to_the_global_one(
    cluster: Cluster,
) -> None:
    sink = cluster.sink()  # the target and the global alert sink
    owner_port = free_port()  # the analytics sink, down at first
    cluster.write_contracts({"revenue.yaml": LATE.format(name="revenue", owner="analytics"),
                             "costs.yaml": LATE.format(name="costs", owner="finance")})  # fmt: skip
    owner_url = f"http://127.0.0.1:{owner_port}"
    cluster.write_config(
        sink.url,
        alerts=sink_config(sink, "/alerts"),
        owners={"analytics": {"alerts": [{"url": owner_url + "/analytics", "secret": "s3cret"}]}},
    )
    cluster.run()
    cluster.cli("publish", "warehouse.orders", "--partition", "2026-11-20", "--event-id", "o1")

    # The owner's sink failing holds back no other alert: finance has no sink, so global.
    [missed] = wait_until(lambda: received(sink, "/alerts"))
    assert (missed["baton"]["contract"], missed["baton"]["owner"]) == ("costs", "finance")
    assert missed["baton"]["kind"] == "deadline_missed"
    assert "Owner: finance." in missed["text"]

    owner_sink = cluster.sink(port=owner_port)  # back: the pending alert is sent again
    [routed] = wait_until(lambda: received(owner_sink, "/analytics"))
    assert (routed["baton"]["contract"], routed["baton"]["owner"]) == ("revenue", "analytics")
    assert [m["dataset"] for m in routed["baton"]["missing"]] == ["warehouse.fx"]

    cluster.cli("publish", "warehouse.fx", "--partition", "2026-11-20", "--event-id", "f1")
    notes = wait_until(lambda: len(received(owner_sink, "/analytics")) == 2
                       and received(owner_sink, "/analytics"))  # fmt: skip
    assert notes[1]["baton"]["kind"] == "deadline_recovered"
    wait_until(lambda: len(received(sink, "/alerts")) == 2)
    alerts = received(sink, "/alerts")
    assert [a["baton"]["contract"] for a in alerts] == ["costs", "costs"]  # revenue never here
    assert len(owner_sink.distinct_keys()) == 2


DOWN = """
name: to_down_target
owner: {owner}
partitioned: daily
when: feeds.a
retry: {{max_attempts: 2}}
trigger: {{target: down}}
"""


def test_a_dead_letter_goes_to_the_owner_of_the_contract_loaded_now(cluster: Cluster) -> None:
    sink = cluster.sink()
    folder = cluster.write_contracts({"down.yaml": DOWN.format(owner="analytics")})
    down = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens: every call refused
    cluster.write_config(
        sink.url,
        targets={"down": {"kind": "webhook", "url": down, "secret": "s3cret"}},
        alerts=sink_config(sink, "/alerts"),
        owners={"analytics": {"alerts": sink_config(sink, "/analytics")}},
    )
    cluster.run()
    cluster.cli("publish", "feeds.a", "--partition", "2026-11-23")
    trigger_id = "baton:to_down_target:2026-11-23:0"

    [letter] = wait_until(lambda: received(sink, "/analytics"))
    assert letter["baton"]["kind"] == "dead_letter"
    assert (letter["baton"]["trigger_id"], letter["baton"]["owner"]) == (trigger_id, "analytics")
    assert received(sink, "/alerts") == []

    # The set is reloaded with another owner: the next dead letter follows it.
    (folder / "down.yaml").write_text(DOWN.format(owner="finance"))
    wait_until(lambda: _owner_of(cluster, "to_down_target") == "finance")
    assert cluster.cli("dlq", "retry", trigger_id).stdout.strip() == f"retried {trigger_id}"
    [again] = wait_until(lambda: received(sink, "/alerts"))
    assert (again["baton"]["trigger_id"], again["baton"]["owner"]) == (trigger_id, "finance")
    assert len(received(sink, "/analytics")) == 1


def _owner_of(cluster: Cluster, name: str) -> str | None:
    listed = httpx.get(cluster.api + "/v1/contracts", timeout=5).json()["contracts"]
    return next((c["owner"] for c in listed if c["name"] == name), None)


def test_check_json_lists_owner_errors(cluster: Cluster) -> None:
    cluster.write_contracts({"unowned.yaml": UNOWNED})
    cluster.write_config("http://127.0.0.1:9", check=REQUIRE)
    result = cluster.cli("check", "--json", check=False)
    assert result.returncode == 1
    [error] = json.loads(result.stdout)["errors"]
    assert error.endswith("unowned.yaml:1: owner: required by this Baton's config "
                          "(check.require_owner)")  # fmt: skip
