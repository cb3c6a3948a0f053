"""The task-side Publisher against a real Baton: stable ids, the spool while Baton is
down, refusals that do not fail the task, and `baton spool flush`."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from adapters.publish import Publisher, stable_event_id
from broker.client import BatonUnavailable
from broker.embedded_redis import free_port
from tests.conftest import Cluster, stream_events, wait_until

CONTRACT = """
name: report
partitioned: daily
when: warehouse.orders
trigger: {target: hook}
"""
TOKEN = "task-token-1"


def start_baton(cluster: Cluster) -> None:
    cluster.write_contracts({"report.yaml": CONTRACT})
    cluster.write_config(
        "http://127.0.0.1:9",
        producers=[{"name": "tasks", "token": TOKEN, "datasets": ["warehouse.*"]}],
    )
    cluster.run()


def stream_ids(cluster: Cluster) -> list[str]:
    return [e["event_id"] for e in stream_events(cluster.redis_url)]


def test_a_stable_id_makes_a_republish_a_duplicate(cluster: Cluster, tmp_path: Path) -> None:
    start_baton(cluster)
    publisher = Publisher(cluster.api, token=TOKEN, spool_dir=tmp_path / "spool")
    event = publisher.event("warehouse.orders", "2026-11-23", event_id="airflow/load/r1/t")
    first = publisher.publish([event])
    again = publisher.publish([event])
    assert first.accepted == ["airflow/load/r1/t"] and first.duplicates == []
    assert again.accepted == [] and again.duplicates == ["airflow/load/r1/t"]
    assert stream_ids(cluster) == ["airflow/load/r1/t"]


def test_while_baton_is_down_events_wait_in_the_spool_and_go_first_when_it_is_back(
    cluster: Cluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cluster.port = free_port()  # nothing listens there yet
    spool = tmp_path / "spool"
    publisher = Publisher(cluster.api, token=TOKEN, spool_dir=spool, attempts=2)
    with caplog.at_level(logging.WARNING, logger="baton.publish"):
        down = publisher.publish([publisher.event("warehouse.orders", "2026-11-22", event_id="a")])
        publisher.publish([publisher.event("warehouse.orders", "2026-11-23", event_id="b")])
    assert down.spooled == ["a"] and down.accepted == []
    assert "is unavailable" in caplog.text and str(spool) in caplog.text
    assert len(list(spool.glob("*.json"))) == 2

    start_baton(cluster)
    back = publisher.publish([publisher.event("warehouse.orders", "2026-11-24", event_id="c")])
    assert back.flushed == 2 and back.accepted == ["c"]
    assert stream_ids(cluster) == ["a", "b", "c"]  # the spool goes first, oldest first
    assert list(spool.glob("*.json")) == []


def test_required_fails_the_task_when_baton_is_down(cluster: Cluster, tmp_path: Path) -> None:
    cluster.port = free_port()
    publisher = Publisher(cluster.api, spool_dir=tmp_path / "spool", attempts=1, required=True)
    with pytest.raises(BatonUnavailable):
        publisher.publish([publisher.event("warehouse.orders", None, event_id="x")])
    # still kept: the retried task, or `baton spool flush`, sends it later
    assert len(list((tmp_path / "spool").glob("*.json"))) == 1


def test_a_refusal_is_logged_not_spooled_and_does_not_fail_the_task(
    cluster: Cluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    start_baton(cluster)
    publisher = Publisher(cluster.api, token=TOKEN, spool_dir=tmp_path / "spool")
    with caplog.at_level(logging.ERROR, logger="baton.publish"):
        outcome = publisher.publish([publisher.event("finance.ledger", None, event_id="f")])
    assert outcome.refused and "finance.ledger" in outcome.refused
    assert "finance.ledger" in caplog.text
    assert not (tmp_path / "spool").exists() and stream_ids(cluster) == []


def test_baton_spool_flush_sends_what_waits(cluster: Cluster, tmp_path: Path) -> None:
    cluster.port = free_port()
    spool = tmp_path / "spool"
    publisher = Publisher(cluster.api, token=TOKEN, spool_dir=spool, attempts=1)
    publisher.publish([publisher.event("warehouse.orders", "2026-11-23", event_id="s1")])
    start_baton(cluster)
    listed = cluster.cli("spool", "list", "--dir", str(spool))
    assert "1 file(s) waiting" in listed.stdout and "1 event(s)" in listed.stdout
    flushed = cluster.cli("spool", "flush", "--dir", str(spool), "--token", TOKEN)
    assert "sent 1 event(s)" in flushed.stdout and "0 file(s) left" in flushed.stdout
    wait_until(lambda: stream_ids(cluster) == ["s1"])


def test_long_ids_are_shortened_with_a_hash_and_stay_stable() -> None:
    short = stable_event_id("airflow", "dag", "run", "task", None, "warehouse.orders")
    assert short == "airflow/dag/run/task/warehouse.orders"
    parts = ("dagster", "x" * 600, "y")
    long_id = stable_event_id(*parts)
    assert len(long_id) == 512 and long_id == stable_event_id(*parts)
    assert long_id != stable_event_id("dagster", "x" * 600, "z")
