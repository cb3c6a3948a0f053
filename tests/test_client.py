"""BatonClient over HTTP and straight to Redis: the same answers, retries that dedupe."""

from __future__ import annotations

import httpx
import pytest
import redis

from broker.client import AsyncBatonClient, BatonClient
from broker.core.errors import EventRejected
from tests.conftest import Cluster

CONTRACT = "name: c\nwhen: d\ntrigger: {target: hook}\n"


def test_publishing_to_redis_is_idempotent_by_event_id(redis_url: str) -> None:
    with BatonClient(redis_url=redis_url) as client:
        first = client.publish("warehouse.orders", "2026-11-23", event_id="load/1")
        again = client.publish("warehouse.orders", "2026-11-23", event_id="load/1")
        batch = client.publish_many([{"dataset": "x", "event_id": f"e{i}"} for i in range(2500)])
    assert first.accepted == ["load/1"] and again.duplicates == ["load/1"]
    assert len(batch.accepted) == 2500
    plain = redis.Redis.from_url(redis_url)
    assert plain.xlen("baton:events") == 2501
    plain.close()


def test_publishing_over_http_returns_the_accepted_ids(cluster: Cluster) -> None:
    cluster.write_contracts({"c.yaml": CONTRACT})
    cluster.write_config("http://127.0.0.1:9")
    cluster.start("api", name="api")
    cluster.wait_healthy()
    with BatonClient(url=cluster.api) as client:
        result = client.publish("d", metadata={"rows": 3}, event_id="x1")
        assert result.accepted == ["x1"]
        assert client.publish("d", event_id="x1").duplicates == ["x1"]
        with pytest.raises(EventRejected, match="color: Extra inputs are not permitted"):
            client.publish_many([{"dataset": "d", "color": "red"}])


async def test_the_async_client_retries_a_dropped_connection_with_the_same_event_id(
    redis_url: str,
) -> None:
    sent: list[str] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        sent.append(request.content.decode())
        if len(sent) == 1:
            raise httpx.ConnectError("reset", request=request)
        return httpx.Response(202, json={"accepted": ["only"], "duplicates": []})

    client = AsyncBatonClient(url="http://baton.test", attempts=3)
    client._http = httpx.AsyncClient(transport=httpx.MockTransport(flaky))
    result = await client.publish("d", event_id="only")
    await client.aclose()
    assert result.accepted == ["only"]
    assert len(sent) == 2 and sent[0] == sent[1]
