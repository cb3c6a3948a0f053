"""Event -> dispatch latency through a real `baton worker` at a fixed offered rate.

Each event carries its send time; a static-partitioned contract fires once per event
and its webhook posts that time to a raw sink in its own process, which notes the
arrival. So the figure is: event handed to Redis -> dispatch call received.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

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


async def event_to_dispatch(url: str, tmp: Path, rate: int, seconds: int) -> list[Row]:
    sink_port, out = free_port(), tmp / "delays.txt"
    sink = subprocess.Popen([sys.executable, "-m", "benchmarks.sink", str(sink_port), str(out)])
    hook = {"hook": {"kind": "webhook", "url": f"http://127.0.0.1:{sink_port}/hook"}}
    config = procs.write_config(tmp, url, free_port(), {"lat.yaml": CONTRACT}, targets=hook)
    worker = procs.start(config, "worker")
    try:
        await asyncio.sleep(3)  # worker and sink start-up
        total = await _offer(url, rate, seconds)
        await asyncio.sleep(3)  # let the tail drain
    finally:
        procs.stop(worker)
        sink.terminate()
        sink.wait(timeout=10)
    delays = [float(x) for x in out.read_text().split()] if out.exists() else []
    cuts = statistics.quantiles(delays, n=100) if len(delays) > 1 else [float("nan")] * 99
    return [
        Row(f"event -> dispatch p50 at {rate}/s offered", cuts[49] * 1000, "ms"),
        Row(f"event -> dispatch p99 at {rate}/s offered", cuts[98] * 1000, "ms", target="<= 5 ms"),
        Row("triggers dispatched / events offered", len(delays) / total, "fraction"),
    ]


async def _offer(url: str, rate: int, seconds: int) -> int:
    total = rate * seconds
    async with AsyncBatonClient(redis_url=url) as client:
        start = time.perf_counter()
        for i in range(total):
            pause = start + i / rate - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
            await client.publish("bench.lat", f"k{i}", metadata={"sent": time.time()})
    return total
