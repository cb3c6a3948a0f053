"""Event -> dispatch latency through a real `baton worker` at a fixed offered rate.

Each event carries its send time; a static-partitioned contract fires once per event
and its webhook posts that time back to a sink in this process, which subtracts it
from the arrival time. So the figure is: event in the stream -> dispatch call received.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request

from benchmarks import procs
from benchmarks.report import Row
from broker.client import AsyncBatonClient
from broker.embedded_redis import free_port

CONTRACT = """
name: latency
partitioned: static
when: bench.lat
trigger:
  target: hook
  body: {sent: "{{ inputs['bench.lat'].metadata.sent }}"}
"""


def _sink(delays: list[float]) -> FastAPI:
    app = FastAPI()

    @app.post("/hook")
    async def hook(request: Request) -> dict[str, bool]:
        body = await request.json()
        delays.append(time.time() - float(body["sent"]))
        return {"ok": True}

    return app


async def event_to_dispatch(url: str, tmp: Path, rate: int, seconds: int) -> list[Row]:
    delays: list[float] = []
    sink_port = free_port()
    server = uvicorn.Server(uvicorn.Config(_sink(delays), port=sink_port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    hook = {"hook": {"kind": "webhook", "url": f"http://127.0.0.1:{sink_port}/hook"}}
    config = procs.write_config(tmp, url, free_port(), {"lat.yaml": CONTRACT}, targets=hook)
    worker = procs.start(config, "worker")
    try:
        await asyncio.sleep(3)  # worker start-up
        total = await _offer(url, rate, seconds)
        await _drain(delays, total)
    finally:
        procs.stop(worker)
        server.should_exit = True
        with contextlib.suppress(Exception):
            await serving
    cuts = statistics.quantiles(delays, n=100) if len(delays) > 1 else [0.0] * 99
    return [
        Row(f"event -> dispatch p50 at {rate}/s offered", cuts[49] * 1000, "ms"),
        Row(f"event -> dispatch p99 at {rate}/s offered", cuts[98] * 1000, "ms", target="<= 5 ms"),
        Row("events dispatched / offered", len(delays) / total, "fraction"),
    ]


async def _offer(url: str, rate: int, seconds: int) -> int:
    total = rate * seconds
    async with AsyncBatonClient(redis_url=url) as client:
        start = time.perf_counter()
        for i in range(total):
            due = start + i / rate
            pause = due - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
            await client.publish("bench.lat", f"k{i}", metadata={"sent": time.time()})
    return total


async def _drain(delays: list[float], total: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(delays) < total and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
