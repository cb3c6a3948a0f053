"""Ingest rates: HTTP single events against one `baton api`, and BatonClient batches."""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks import loadgen, procs
from benchmarks.report import Row
from broker.client import AsyncBatonClient
from broker.embedded_redis import free_port

CONTRACT = "name: sink\nwhen: bench.other\ntrigger: {target: hook}\n"
HOOK = {"hook": {"kind": "webhook", "url": "http://127.0.0.1:9/"}}


async def http_single(url: str, tmp: Path, n: int, baseline: float) -> list[Row]:
    port = free_port()
    config = procs.write_config(tmp, url, port, {"c.yaml": CONTRACT}, targets=HOOK)
    api = procs.start(config, "api")
    try:
        procs.wait_http(f"http://127.0.0.1:{port}/healthz")
        rate = await _post_singles(f"http://127.0.0.1:{port}", n, connections=16)
    finally:
        procs.stop(api)
    return [
        Row(
            "HTTP ingest, single events, 1 API worker", rate, "events/s", rate / baseline, ">= 0.5x"
        ),
    ]


async def _post_singles(base: str, n: int, connections: int) -> float:
    host = base.removeprefix("http://")

    def make(i: int) -> bytes:
        body = b'{"dataset":"bench.in","partition":"2026-11-23","event_id":"s%d"}' % i
        return loadgen.request(host, "/v1/events", body)

    return await loadgen.post_many(base, make, n, connections)


async def client_batches(url: str, n: int, baseline: float) -> list[Row]:
    events = [
        {"dataset": "bench.batch", "partition": "2026-11-23", "event_id": f"b{i}"} for i in range(n)
    ]
    async with AsyncBatonClient(redis_url=url, namespace="benchclient") as client:
        start = time.perf_counter()
        result = await client.publish_many(events)
        rate = n / (time.perf_counter() - start)
    assert len(result.accepted) == n
    return [
        Row("BatonClient batches of 1000, to Redis", rate, "events/s", rate / baseline, ">= 0.5x")
    ]
