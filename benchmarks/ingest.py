"""Ingest rates: HTTP single events and batches against `baton api` (1 and 2 API
workers), and BatonClient batches straight to Redis."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from benchmarks import loadgen, procs
from benchmarks.report import Row
from broker.client import AsyncBatonClient
from broker.embedded_redis import free_port

CONTRACT = "name: sink\nwhen: bench.other\ntrigger: {target: hook}\n"
HOOK = {"hook": {"kind": "webhook", "url": "http://127.0.0.1:9/"}}


async def http(url: str, tmp: Path, n: int, one: float, piped: float) -> list[Row]:
    """`n` single events, then `n` events in batches of 100, against `baton api` with 1
    and with 2 API workers; next to the raw one-per-round-trip and pipelined rates."""
    rows = []
    for workers in (1, 2):
        port = free_port()
        api = {"host": "127.0.0.1", "port": port, "workers": workers}
        # a namespace of its own: no later benchmark's worker wades through these events
        config = procs.write_config(tmp, url, port, {"c.yaml": CONTRACT}, targets=HOOK, api=api,
                                    namespace=f"bench-ingest-{workers}")  # fmt: skip
        proc = procs.start(config, "api")
        base = f"http://127.0.0.1:{port}"
        try:
            procs.wait_http(f"{base}/healthz")
            await asyncio.sleep(1.0 * (workers - 1))  # the second worker starting up
            singles = await _post(base, n, per_request=1, connections=16)
            batches = await _post(base, n, per_request=100, connections=4)
        finally:
            procs.stop(proc)
        label = f"{workers} API worker{'s' if workers > 1 else ''}"
        rows += [
            Row(f"HTTP ingest, single events, {label}", singles, "events/s", singles / one,
                ">= 0.5x" if workers == 1 else ""),
            Row(f"HTTP ingest, batches of 100, {label}", batches, "events/s", batches / piped, ""),
        ]  # fmt: skip
    return rows


async def _post(base: str, n: int, per_request: int, connections: int) -> float:
    """Events per second, `per_request` events in each POST (unique ids per run)."""
    host, run = base.removeprefix("http://"), base.rsplit(":", 1)[1]

    def make(i: int) -> bytes:
        events = b",".join(
            b'{"dataset":"bench.in","partition":"2026-11-23","event_id":"%s-%d-%d"}'
            % (run.encode(), per_request, i * per_request + j)
            for j in range(per_request)
        )
        body = events if per_request == 1 else b'{"events":[' + events + b"]}"
        return loadgen.request(host, "/v1/events", body)

    return per_request * await loadgen.post_many(base, make, n // per_request, connections)


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
