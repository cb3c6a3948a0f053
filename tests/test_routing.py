"""Publishing into the void is answered: the 202 says, per event, which contracts it
feeds and which it cannot, and why, while the event is kept (it is a fact). Through the
app on a real Redis, the client's and the task helpers' strict modes, and `baton
publish` against a real `baton run`."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from adapters.publish import Outcome, Publisher, settle_routes
from broker.api.app import create_app
from broker.client import AsyncBatonClient, BatonClient, Unrouted
from broker.core.settings import Settings
from broker.ingest.intake import Cannot, EventRoute, IngestResult
from broker.matching.loaded import load_checked
from broker.runtime import Runtime
from tests.conftest import Cluster

CONTRACTS = {
    "revenue.yaml": "name: revenue_report\npartitioned: daily\nwhen: warehouse.orders\n"
                    "trigger: {target: hook}\n",
    "eu.yaml": "name: eu_orders\npartitioned: daily\ntrigger: {target: hook}\n"
               "when: {dataset: warehouse.orders, where: \"metadata.region == 'eu'\"}\n",
    "weekly.yaml": "name: weekly_summary\npartitioned: weekly\ntrigger: {target: hook}\n"
                   "when: {dataset: warehouse.orders, partitioned: daily}\n",
    "regional.yaml": "name: regional\npartitioned: static\npartitions: [eu, us]\n"
                     "when: sales.regions\ntrigger: {target: hook}\n",
    "snapshot.yaml": "name: snapshot\nwhen: warehouse.customers\ntrigger: {target: hook}\n",
}  # fmt: skip
EU = {"region": "eu"}
Api = tuple[httpx.AsyncClient, Runtime, FastAPI, Settings]


@pytest.fixture
async def api(tmp_path: Path, redis_url: str) -> AsyncIterator[Api]:
    folder = tmp_path / "contracts"
    folder.mkdir()
    for name, text in CONTRACTS.items():
        (folder / name).write_text(text)
    hook = {"kind": "webhook", "url": "http://127.0.0.1:9/"}
    settings = Settings(redis_url=redis_url, contracts=folder, targets={"hook": hook})
    runtime = await Runtime.open(settings)
    app = create_app(runtime, load_checked(settings))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://baton") as client:
        yield client, runtime, app, settings
    await runtime.close()


async def route_of(client: httpx.AsyncClient, **event: Any) -> dict[str, Any]:
    answer = await client.post("/v1/events", json=event)
    assert answer.status_code == 202, answer.text
    (route,) = answer.json()["routes"]
    assert route["event_id"] == (answer.json()["accepted"] + answer.json()["duplicates"])[0]
    return dict(route)


def reasons(route: dict[str, Any]) -> dict[str | None, str]:
    return {c["contract"]: c["reason"] for c in route["cannot"]}


async def test_an_event_that_fits_names_every_contract_it_feeds(api: Api) -> None:
    client = api[0]
    route = await route_of(client, dataset="warehouse.orders", partition="2026-11-23", metadata=EU)
    assert route["feeds"] == ["eu_orders", "revenue_report", "weekly_summary"]
    assert route["cannot"] == []


@pytest.mark.parametrize(
    ("partition", "why"),
    [
        ("23-11-2026", "partition '23-11-2026' is not a daily key (YYYY-MM-DD)"),
        ("2026-11-31", "no daily partition for 2026-11-31: day is out of range for month"),
        ("2026-W48", "partition '2026-W48' is not a daily key (YYYY-MM-DD)"),
        (None, "the event has no partition"),
    ],
)
async def test_a_partition_key_that_does_not_fit_is_a_reason_per_contract(
    api: Api, partition: str | None, why: str
) -> None:
    client, runtime, _, _ = api
    route = await route_of(client, dataset="warehouse.orders", partition=partition, metadata=EU)
    assert route["feeds"] == []
    assert reasons(route) == {
        "revenue_report": f"revenue_report reads warehouse.orders daily: {why}",
        "eu_orders": f"eu_orders reads warehouse.orders daily: {why}",
        "weekly_summary": f"weekly_summary reads warehouse.orders daily: {why}",
    }
    assert await runtime.redis.xlen("baton:events") == 1  # a fact all the same: kept


async def test_an_unknown_dataset_is_said_to_feed_nothing(api: Api) -> None:
    route = await route_of(api[0], dataset="warehouse.orderz", partition="2026-11-23")
    assert route["feeds"] == []
    assert route["cannot"] == [
        {"contract": None, "reason": "no contract reads warehouse.orderz", "kind": "no_reader"}
    ]


async def test_a_where_filter_that_leaves_the_event_out_is_a_reason(api: Api) -> None:
    route = await route_of(api[0], dataset="warehouse.orders", partition="2026-11-23",
                           metadata={"region": "us"})  # fmt: skip
    assert route["feeds"] == ["revenue_report", "weekly_summary"]
    assert reasons(route) == {
        "eu_orders": "eu_orders reads warehouse.orders only where metadata.region == 'eu', "
        "and this event does not match"
    }


async def test_a_partition_outside_a_contracts_partitions_is_a_reason(api: Api) -> None:
    client = api[0]
    assert (await route_of(client, dataset="sales.regions", partition="eu"))["feeds"] == [
        "regional"
    ]
    route = await route_of(client, dataset="sales.regions", partition="fr")
    assert reasons(route) == {"regional": "regional runs only for the partitions eu, us; 'fr' "
                                          "feeds none of them"}  # fmt: skip


async def test_an_unpartitioned_contract_takes_any_event_of_its_dataset(api: Api) -> None:
    for partition in (None, "2026-11-23"):
        route = await route_of(api[0], dataset="warehouse.customers", partition=partition)
        assert route == {"event_id": route["event_id"], "feeds": ["snapshot"], "cannot": []}


async def test_a_batch_has_a_route_per_event_in_order_duplicates_included(api: Api) -> None:
    client = api[0]
    batch = {"events": [
        {"dataset": "warehouse.orders", "partition": "2026-11-23", "event_id": "o1"},
        {"dataset": "nobody.reads", "event_id": "n1"},
        {"dataset": "warehouse.orders", "partition": "2026-11-23", "event_id": "o1"},
        {"dataset": "sales.regions", "partition": "us"},
    ]}  # fmt: skip
    body = (await client.post("/v1/events", json=batch)).json()
    assert [r["event_id"] for r in body["routes"]] == ["o1", "n1", "o1", body["accepted"][2]]
    assert body["duplicates"] == ["o1"]
    assert [r["feeds"] for r in body["routes"]] == [
        ["revenue_report", "weekly_summary"], [], ["revenue_report", "weekly_summary"],
        ["regional"],
    ]  # fmt: skip


async def test_routes_follow_the_contracts_loaded_now(api: Api) -> None:
    client, _, app, settings = api
    before = await route_of(client, dataset="warehouse.fresh", partition="2026-11-23")
    assert before["feeds"] == []
    (settings.contracts / "fresh.yaml").write_text(
        "name: fresh\npartitioned: daily\nwhen: warehouse.fresh\ntrigger: {target: hook}\n"
    )
    app.state.contracts = load_checked(settings)  # what a reload does
    after = await route_of(client, dataset="warehouse.fresh", partition="2026-11-24")
    assert after["feeds"] == ["fresh"]


async def test_openlineage_and_cloudevents_answers_route_too(api: Api) -> None:
    client = api[0]
    run_event = {"eventType": "COMPLETE", "eventTime": "2026-11-23T05:00:00Z", "producer": "p",
                 "run": {"runId": "r1"}, "job": {"namespace": "airflow", "name": "load"},
                 "outputs": [{"namespace": "warehouse", "name": "orders",
                              "facets": {"partition": {"key": "23-11-2026"}}}]}  # fmt: skip
    lineage = (await client.post("/v1/openlineage", json=run_event)).json()
    assert lineage["ignored"] == 0
    (route,) = lineage["routes"]
    assert route["cannot"] == [
        {"contract": None, "reason": "no contract reads warehouse/orders", "kind": "no_reader"}
    ]
    envelope = {"specversion": "1.0", "id": "c1", "source": "urn:x", "type": "t",
                "data": {"dataset": "sales.regions", "partition": "us"}}  # fmt: skip
    cloud = await client.post("/v1/events", json=envelope,
                              headers={"content-type": "application/cloudevents+json"})  # fmt: skip
    assert cloud.json()["routes"] == [{"event_id": "urn:x/c1", "feeds": ["regional"], "cannot": []}]


# -- strict publishing: the client ------------------------------------------------------


def client_on(api: Api, strict: bool) -> AsyncBatonClient:
    client = AsyncBatonClient(url="http://baton", strict=strict, attempts=1)
    client._http = httpx.AsyncClient(transport=httpx.ASGITransport(app=api[2]))
    return client


async def test_the_client_returns_routes_and_strict_raises_after_acceptance(api: Api) -> None:
    runtime = api[1]
    async with client_on(api, strict=False) as lenient:
        result = await lenient.publish("warehouse.orders", "23-11-2026", event_id="l1")
    assert result.accepted == ["l1"] and result.routes is not None
    assert [c.contract for c in result.routes[0].cannot] == [
        "eu_orders", "revenue_report", "weekly_summary",
    ]  # fmt: skip
    async with client_on(api, strict=True) as strict:
        with pytest.raises(Unrouted) as raised:
            await strict.publish("warehouse.orders", "23-11-2026", event_id="s1")
        fits = await strict.publish("warehouse.orders", "2026-11-23", event_id="s2", metadata=EU)
        assert fits.accepted == ["s2"]
        # A `where` that says no is routine, not a mistake: eu_orders misses it, no raise.
        us = await strict.publish("warehouse.orders", "2026-11-23", event_id="s3")
        assert us.routes is not None and [c.kind for c in us.routes[0].cannot] == ["filtered"]
    assert raised.value.result.accepted == ["s1"]
    assert raised.value.reasons[0] == (
        "s1: revenue_report reads warehouse.orders daily: partition '23-11-2026' is not a "
        "daily key (YYYY-MM-DD)"
    )
    assert "accepted, but not routed: s1: revenue_report reads" in str(raised.value)
    assert "eu_orders" not in str(raised.value)  # its filter's no is not a mistake
    assert await runtime.redis.xlen("baton:events") == 4  # accepted: they are facts


async def test_strict_publishing_of_many_raises_once_naming_each_unrouted_event(api: Api) -> None:
    async with client_on(api, strict=True) as strict:
        with pytest.raises(Unrouted) as raised:
            await strict.publish_many([{"dataset": "a.b", "event_id": "x"},
                                       {"dataset": "sales.regions", "partition": "us"},
                                       {"dataset": "c.d", "event_id": "y"}])  # fmt: skip
    assert raised.value.reasons == ["x: no contract reads a.b", "y: no contract reads c.d"]
    assert len(raised.value.result.accepted) == 3


def test_strict_needs_the_api_not_redis(redis_url: str) -> None:
    with pytest.raises(ValueError, match="strict=True needs url="):
        BatonClient(redis_url=redis_url, strict=True)


# -- strict publishing: the task-side helpers' shared logic ------------------------------


def unrouted_result() -> IngestResult:
    nowhere = EventRoute("e1", [], [Cannot(None, "no contract reads x.y", "no_reader")])
    partly = EventRoute("e2", ["a"], [Cannot("b", "b reads z daily: the event has no partition")])
    return IngestResult(["e1", "e2", "e3"], [], [nowhere, partly, EventRoute("e3", ["a"])])


def test_a_helper_warns_of_events_that_go_nowhere_and_does_not_fail(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outcome = Outcome()
    with caplog.at_level(logging.WARNING, logger="baton.publish"):
        settle_routes(outcome, unrouted_result(), strict=False)
    assert outcome.unrouted == ["e1: no contract reads x.y",
                                "e2: b reads z daily: the event has no partition"]  # fmt: skip
    assert "no contract reads x.y" in caplog.text


def test_a_strict_helper_fails_the_task_naming_the_reasons() -> None:
    with pytest.raises(Unrouted, match=r"e1: no contract reads x\.y; e2: b reads z daily"):
        settle_routes(Outcome(), unrouted_result(), strict=True)
    settle_routes(Outcome(), IngestResult(["e3"], [], [EventRoute("e3", ["a"])]), strict=True)


def test_a_strict_helper_fails_when_the_answer_cannot_say() -> None:
    settle_routes(Outcome(), IngestResult(["e1"]), strict=False)  # an older Baton: quiet
    with pytest.raises(Unrouted, match="does not say"):
        settle_routes(Outcome(), IngestResult(["e1"]), strict=True)


def test_baton_strict_in_the_environment_makes_a_helper_strict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BATON_STRICT", "true")
    assert Publisher().strict and not Publisher(strict=False).strict
    monkeypatch.setenv("BATON_STRICT", "no")
    assert not Publisher().strict and Publisher(strict=True).strict


# -- against a real `baton run` ---------------------------------------------------------


def start(cluster: Cluster) -> None:
    cluster.write_contracts({"revenue.yaml": CONTRACTS["revenue.yaml"]})
    cluster.write_config("http://127.0.0.1:9")
    cluster.run()


def test_baton_publish_prints_where_the_event_goes_and_strict_exits_1(cluster: Cluster) -> None:
    start(cluster)
    good = cluster.cli("publish", "warehouse.orders", "-p", "2026-11-23", "--event-id", "g1",
                       "--strict")  # fmt: skip
    assert good.stdout.splitlines() == ["accepted g1", "  feeds: revenue_report"]
    lenient = cluster.cli("publish", "warehouse.orders", "-p", "23-11-2026", "--event-id", "b1")
    assert lenient.stdout.splitlines() == [
        "accepted b1",
        "  feeds: nothing",
        "  not fed: revenue_report reads warehouse.orders daily: partition '23-11-2026' is "
        "not a daily key (YYYY-MM-DD)",
    ]
    strict = cluster.cli("publish", "warehouse.orderz", "--event-id", "v1", "--strict",
                         check=False)  # fmt: skip
    assert strict.returncode == 1
    assert strict.stdout.splitlines() == [
        "accepted v1", "  feeds: nothing (no contract reads warehouse.orderz)",
    ]  # fmt: skip
    assert "v1: no contract reads warehouse.orderz" in strict.stderr
    again = cluster.cli("publish", "warehouse.orderz", "--event-id", "v1", "--json", "--strict",
                        check=False)  # fmt: skip
    assert again.returncode == 1
    assert json.loads(again.stdout)["routes"] == [
        {"event_id": "v1", "feeds": [], "cannot": [
            {"contract": None, "reason": "no contract reads warehouse.orderz",
             "kind": "no_reader"}]}
    ]  # fmt: skip
    redis = cluster.cli("publish", "x", "--strict", "--redis-url", cluster.redis_url, check=False)
    assert redis.returncode == 2 and "--strict needs Baton's API" in redis.stderr


def test_a_strict_publisher_fails_the_task_after_baton_kept_the_event(
    cluster: Cluster, tmp_path: Path
) -> None:
    start(cluster)
    publisher = Publisher(cluster.api, spool_dir=tmp_path / "spool", strict=True)
    with pytest.raises(Unrouted, match=r"t1: no contract reads warehouse\.orderz"):
        publisher.publish([publisher.event("warehouse.orderz", "2026-11-23", event_id="t1")])
    fine = publisher.publish([publisher.event("warehouse.orders", "2026-11-23", event_id="t2")])
    assert fine.accepted == ["t2"] and fine.unrouted == []
    with BatonClient(url=cluster.api) as client:  # kept: sending it again is a duplicate
        assert client.publish("warehouse.orderz", "2026-11-23", event_id="t1").duplicates == ["t1"]
