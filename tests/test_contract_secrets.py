"""Secrets in contracts: `${VAR}` resolved only when the trigger is sent, from the
variables the config lets contracts read; never shown back by the API, the status
page, `baton explain` or the log; a credential written out in a file is refused."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Cluster, wait_until
from tests.flaky_target import FlakyTarget

SECRET = "s3cr3t-hook-value-7781"
CONTRACT = """
name: report
partitioned: daily
when: warehouse.orders
trigger:
  target: flaky
  headers: {Authorization: "Bearer ${HOOK_TOKEN}", X-Run: "{{ partition }}"}
"""


@pytest.fixture
def flaky() -> Iterator[FlakyTarget]:
    target = FlakyTarget().start()
    yield target
    target.stop()


def start(cluster: Cluster, flaky: FlakyTarget, contract: str = CONTRACT) -> None:
    cluster.extra_env = {"HOOK_TOKEN": SECRET, "BATON_ADMIN_LIKE": "do-not-send-me-9"}
    cluster.write_contracts({"report.yaml": contract})
    cluster.write_config("http://127.0.0.1:9", contract_env=["HOOK_TOKEN"],
                         targets={"flaky": {"kind": "webhook", "url": flaky.url}})  # fmt: skip
    cluster.run()


def publish(cluster: Cluster, day: str) -> None:
    event = {"dataset": "warehouse.orders", "partition": day, "event_id": f"o/{day}"}
    assert httpx.post(cluster.api + "/v1/events", json=event, timeout=5).status_code == 202


def test_a_secret_is_sent_to_the_target_and_shown_nowhere(
    cluster: Cluster, flaky: FlakyTarget
) -> None:
    start(cluster, flaky)
    publish(cluster, "2026-10-01")
    wait_until(flaky.delivered)
    assert flaky.calls[0].headers["Authorization"] == f"Bearer {SECRET}"
    assert flaky.calls[0].headers["X-Run"] == "2026-10-01"
    shown = httpx.get(cluster.api + "/v1/contracts/report", timeout=5).json()
    assert shown["definition"]["trigger"]["headers"]["Authorization"] == "Bearer ${HOOK_TOKEN}"
    page = httpx.get(cluster.api + "/", timeout=5).text
    explained = cluster.cli("explain", "report", "2026-10-01", "--json").stdout
    triggers = cluster.cli("triggers", "--json").stdout
    for text in (json.dumps(shown), page, explained, triggers, cluster.procs[0].output()):
        assert SECRET not in text


def test_a_target_that_echoes_the_secret_back_gets_it_scrubbed_from_the_dead_letter(
    cluster: Cluster, flaky: FlakyTarget
) -> None:
    flaky.refuse = 400
    start(cluster, flaky)
    publish(cluster, "2026-10-02")
    wait_until(
        lambda: httpx.get(cluster.api + "/v1/dlq", timeout=5).json()["dead_letters"], timeout=30
    )
    [letter] = httpx.get(cluster.api + "/v1/dlq", timeout=5).json()["dead_letters"]
    assert "HTTP 400" in letter["error"] and "<redacted>" in letter["error"]
    assert SECRET in repr(flaky.calls[0].headers)  # it was echoed, and is scrubbed here
    for text in (json.dumps(letter), cluster.cli("triggers", "--json").stdout,
                 cluster.procs[0].output()):  # fmt: skip
        assert SECRET not in text


def test_check_refuses_a_written_out_credential_a_variable_not_allowed_and_one_unset(
    cluster: Cluster,
) -> None:
    folder = cluster.write_contracts({
        "literal.yaml": "name: literal\nwhen: a\ntrigger:\n  target: hook\n"
                        "  headers: {Authorization: Bearer abc123}\n",
        "other.yaml": "name: other\nwhen: b\ntrigger:\n  target: hook\n"
                      "  headers: {X-Key: \"${BATON_ADMIN_LIKE}\"}\n",
        "unset.yaml": "name: unset\nwhen: c\ntrigger:\n  target: hook\n"
                      "  headers: {X-Token: \"${HOOK_TOKEN}\"}\n",
    })  # fmt: skip
    cluster.write_config("http://127.0.0.1:9", contract_env=["HOOK_TOKEN"])
    checked = cluster.cli("check", check=False)
    assert checked.returncode == 1
    assert [line.removeprefix(f"{folder}/") for line in checked.stderr.splitlines()] == [
        "literal.yaml:5: trigger.headers.Authorization: looks like a credential written in "
        "the file; give it as ${VAR} (and allow VAR in contract_env)",
        "other.yaml:5: trigger.headers.X-Key: ${BATON_ADMIN_LIKE}: contracts may read only "
        "the environment variables contract_env allows (HOOK_TOKEN)",
        "unset.yaml:5: trigger.headers.X-Token: environment variable HOOK_TOKEN is not set",
    ]
