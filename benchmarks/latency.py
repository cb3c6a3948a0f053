"""Event -> dispatch latency at a fixed offered rate, Baton's and the raw path's, and
the consumer's CPU per event at a low rate.

Each event carries its send time; a raw sink in its own process notes when the
dispatch call arrives. Two runs over the same machine, Redis and sink:

- raw: a bare consumer process (`benchmarks.rawpath`: XREADGROUP -> POST -> XACK);
- Baton: a real `baton worker` with a static-partitioned contract that fires once per
  event and whose webhook posts the send time.

The raw figures are what the machine itself costs for these hops (process wake-ups,
loopback); Baton's overhead is its figure minus the raw one. The latency runs have a
neighbour process burning a core beside them, as a shared host has (`procs.neighbour`).

The CPU rows offer 100 events/s: at that rate each event is handled alone, so what is
measured is the fixed cost of one event (the consumer's wake-ups, round trips and code
path), read from /proc for the consumer process over the publishing time.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import redis.asyncio as redis

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

Publish = Callable[[int], Awaitable[object]]


ROUNDS = 3


async def event_to_dispatch(url: str, tmp: Path, rate: int, seconds: int) -> list[Row]:
    """ROUNDS rounds, each a raw run and then a Baton run of `seconds`, beside the
    neighbour: each side's p50 and p99 is the median of its rounds', so a moment when
    the host stalls (a neighbour's burst moves even the raw p99 from ~5 to ~300 ms)
    weighs on one round of both sides, not on one side of the comparison."""
    raws: list[list[float]] = []
    batons: list[list[float]] = []
    offered = dispatched = 0
    with procs.neighbour():
        for _ in range(ROUNDS):
            raw_delays, _, _ = await _run_raw(url, tmp, rate, seconds)
            delays, sent, _ = await _run_baton(url, tmp, rate, seconds)
            raws.append(_cuts(raw_delays))
            batons.append(_cuts(delays))
            offered, dispatched = offered + sent, dispatched + len(delays)
    raw = [statistics.median(r[i] for r in raws) for i in (49, 98)]
    baton = [statistics.median(b[i] for b in batons) for i in (49, 98)]
    ratios = [b[98] / r[98] for r, b in zip(raws, batons, strict=True)]
    at = f"at {rate}/s, neighbour on, median of {ROUNDS} rounds"
    return [
        Row(f"raw path event -> dispatch p50 {at}", raw[0] * 1000, "ms"),
        Row(f"raw path event -> dispatch p99 {at}", raw[1] * 1000, "ms", None,
            f"rounds {_span(r[98] for r in raws)} ms"),
        Row(f"Baton event -> dispatch p50 {at}", baton[0] * 1000, "ms", baton[0] / raw[0]),
        Row("Baton overhead p50 (Baton - raw)", (baton[0] - raw[0]) * 1000, "ms"),
        Row(f"Baton event -> dispatch p99 {at}", baton[1] * 1000, "ms", baton[1] / raw[1],
            f"<= 2x (rounds {min(ratios):.1f}-{max(ratios):.1f}x)"),
        Row("Baton overhead p99 (Baton - raw)", (baton[1] - raw[1]) * 1000, "ms"),
        Row("triggers dispatched / events offered", dispatched / offered, "fraction"),
    ]  # fmt: skip


def _span(values: Iterable[float]) -> str:
    seen = [v * 1000 for v in values]
    return f"{min(seen):.0f}-{max(seen):.0f}"


async def cpu_per_event(url: str, tmp: Path, rate: int = 100, seconds: int = 20) -> list[Row]:
    """The consumer process's CPU per event at `rate` (each event alone): raw, Baton."""
    _, raw_total, raw_cpu = await _run_raw(url, tmp, rate, seconds)
    delays, total, cpu = await _run_baton(url, tmp, rate, seconds)
    raw_ms, baton_ms = raw_cpu / raw_total * 1000, cpu / total * 1000
    return [
        Row(f"raw path consumer CPU per event at {rate}/s", raw_ms, "ms"),
        Row(f"Baton worker CPU per event at {rate}/s", baton_ms, "ms", baton_ms / raw_ms,
            "<= 1 ms"),
        Row(f"  triggers dispatched / events offered at {rate}/s", len(delays) / total,
            "fraction"),
    ]  # fmt: skip


Measured = tuple[list[float], int, float]  # delays (s), events offered, consumer CPU (s)


async def _run_raw(url: str, tmp: Path, rate: int, seconds: int) -> Measured:
    stream = "bench:rawpath"
    client = redis.Redis.from_url(url)

    async def publish(_: int) -> None:
        await client.xadd(stream, {"e": json.dumps({"sent": time.time()})})

    def consumer(sink_url: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "benchmarks.rawpath", url, stream, sink_url])

    try:
        return await _measure(tmp / "raw.txt", consumer, publish, rate, seconds)
    finally:
        await client.delete(stream)
        await client.aclose()


async def _run_baton(url: str, tmp: Path, rate: int, seconds: int) -> Measured:
    async with AsyncBatonClient(redis_url=url) as client:

        async def publish(i: int) -> None:
            await client.publish("bench.lat", f"k{i}", metadata={"sent": time.time()})

        def worker(sink_url: str) -> subprocess.Popen[bytes]:
            hook = {"hook": {"kind": "webhook", "url": sink_url}}
            config = procs.write_config(tmp, url, free_port(), {"lat.yaml": CONTRACT}, targets=hook)
            return procs.start(config, "worker")

        return await _measure(tmp / "baton.txt", worker, publish, rate, seconds)


async def _measure(
    out: Path,
    consumer: Callable[[str], subprocess.Popen[bytes]],
    publish: Publish,
    rate: int,
    seconds: int,
) -> Measured:
    """Start a sink and a consumer, offer `rate` events a second: the delays, how many
    were offered, and the CPU the consumer used from the first event to the tail."""
    sink_port = free_port()
    sink = subprocess.Popen([sys.executable, "-m", "benchmarks.sink", str(sink_port), str(out)])
    proc = consumer(f"http://127.0.0.1:{sink_port}/hook")
    try:
        await asyncio.sleep(3)  # consumer and sink start-up
        total = rate * seconds
        cpu_before = procs.cpu_seconds(proc.pid)
        start = time.perf_counter()
        for i in range(total):
            pause = start + i / rate - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
            await publish(i)
        await asyncio.sleep(3)  # let the tail drain
        cpu = procs.cpu_seconds(proc.pid) - cpu_before
    finally:
        procs.stop(proc)
        sink.terminate()
        sink.wait(timeout=10)
    delays = [float(x) for x in out.read_text().split()] if out.exists() else []
    return delays, total, cpu


def _cuts(delays: list[float]) -> list[float]:
    return statistics.quantiles(delays, n=100) if len(delays) > 1 else [float("nan")] * 99
