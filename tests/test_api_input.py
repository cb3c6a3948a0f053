"""Bad input at the HTTP door: precise answers, and nothing accepted is lost."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from broker.api.app import create_app
from broker.core.settings import Settings
from broker.matching.loaded import load_checked
from broker.runtime import Runtime

Api = tuple[httpx.AsyncClient, Runtime]

CONTRACT = """
name: report
partitioned: daily
when: {all_of: [orders, fx]}
trigger: {target: hook}
"""


@pytest.fixture
async def api(tmp_path: Path, redis_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    (tmp_path / "contracts").mkdir()
    (tmp_path / "contracts" / "report.yaml").write_text(CONTRACT)
    settings = Settings(
        redis_url=redis_url,
        contracts=tmp_path / "contracts",
        targets={"hook": {"kind": "webhook", "url": "http://127.0.0.1:9/"}},
        api={"max_body_bytes": 256 * 1024},
        max_backlog=50,
    )
    runtime = await Runtime.open(settings)
    app = create_app(runtime, load_checked(settings))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://baton") as client:
        yield client, runtime
    await runtime.close()


async def stream_length(runtime: Runtime) -> int:
    return int(await runtime.redis.xlen("baton:events"))


async def accept_one(client: httpx.AsyncClient) -> None:
    answer = await client.post("/v1/events", json={"dataset": "orders", "event_id": "keep-me"})
    assert answer.status_code == 202


def fields(answer: httpx.Response) -> dict[str, str]:
    assert answer.headers["content-type"] == "application/problem+json"
    body = answer.json()
    assert body["status"] == answer.status_code
    return {e["field"]: e["message"] for e in body.get("errors", [])}


async def test_malformed_json_is_a_400_problem_and_loses_nothing(api: Api) -> None:
    client, runtime = api
    await accept_one(client)
    answer = await client.post(
        "/v1/events", content=b'{"dataset": ', headers={"content-type": "application/json"}
    )
    assert answer.status_code == 400
    assert "body" in fields(answer)
    assert await stream_length(runtime) == 1


async def test_wrong_types_name_each_field(api: Api) -> None:
    client, runtime = api
    answer = await client.post(
        "/v1/events",
        json={
            "events": [
                {"dataset": "orders"},
                {"dataset": 7, "status": "done", "occurred_at": "noon"},
            ]
        },
    )
    assert answer.status_code == 422
    errors = fields(answer)
    assert set(errors) == {"events[1].dataset", "events[1].status", "events[1].occurred_at"}
    assert await stream_length(runtime) == 0  # nothing half-written: the good one waits too


async def test_unknown_fields_are_rejected_by_name(api: Api) -> None:
    client, _ = api
    answer = await client.post("/v1/events", json={"dataset": "orders", "partiton": "2026-11-23"})
    assert answer.status_code == 422
    assert "partiton" in fields(answer)


async def test_oversized_metadata_is_rejected(api: Api) -> None:
    client, runtime = api
    big = {"dataset": "orders", "metadata": {"blob": "x" * (65 * 1024)}}
    answer = await client.post("/v1/events", json=big)
    assert answer.status_code == 422
    assert "at most 65536" in fields(answer)["metadata"]
    assert await stream_length(runtime) == 0


async def test_a_body_over_the_limit_is_413(api: Api) -> None:
    client, runtime = api
    await accept_one(client)
    events = [{"dataset": "orders", "metadata": {"blob": "y" * 60_000}} for _ in range(5)]
    answer = await client.post("/v1/events", content=json.dumps({"events": events}))
    assert answer.status_code == 413
    assert await stream_length(runtime) == 1


async def test_a_batch_over_1000_events_is_rejected(api: Api) -> None:
    client, _ = api
    answer = await client.post("/v1/events", json={"events": [{"dataset": "d"}] * 1001})
    assert answer.status_code == 422
    assert "at most 1000" in fields(answer)["events"]


async def test_a_full_backlog_answers_429_with_retry_after(api: Api) -> None:
    client, runtime = api
    first = await client.post("/v1/events", json={"events": [{"dataset": "d"}] * 50})
    assert first.status_code == 202
    answer = await client.post("/v1/events", json={"dataset": "d"})
    assert answer.status_code == 429
    assert int(answer.headers["retry-after"]) >= 1
    assert await stream_length(runtime) == 50


async def test_duplicate_event_ids_are_reported_not_added(api: Api) -> None:
    client, runtime = api
    batch = {"events": [{"dataset": "d", "event_id": "x"}, {"dataset": "d", "event_id": "x"}]}
    answer = await client.post("/v1/events", json=batch)
    assert answer.status_code == 202
    body = answer.json()
    assert (body["accepted"], body["duplicates"]) == (["x"], ["x"])
    assert await stream_length(runtime) == 1


async def test_explain_of_an_unknown_contract_is_a_404_problem(api: Api) -> None:
    client, _ = api
    answer = await client.get("/v1/contracts/nope/partitions/2026-11-23")
    assert answer.status_code == 404
    assert "nope" in answer.json()["detail"]


async def test_an_event_id_with_a_control_character_is_rejected(api: Api) -> None:
    client, runtime = api
    answer = await client.post("/v1/events", json={"dataset": "d", "event_id": "a\nb"})
    assert answer.status_code == 422
    assert "printable" in fields(answer)["event_id"]
    assert await stream_length(runtime) == 0
