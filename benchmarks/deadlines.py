"""The deadline clock's alert delay: from the instant a deadline passes to the alert's
arrival at a webhook sink, for many deadlines passing in the same minute.

    make bench-deadlines        (about two minutes: it waits for a real minute to turn)

Baton: `baton run` with N daily contracts whose deadline is the next whole minute
(`HH:MM` after the previous day's end) and one of their two inputs published, so each
partition is on the clock and misses. Raw baseline, same run: a bare loop over a Redis
sorted set (ZRANGEBYSCORE + ZREM every 0.2 s, Baton's own tick) posting to the same
kind of sink. The difference is what Baton adds: the Lua decision, the alerts stream,
the alerters group, reading the partition to name what is missing.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as redis

from benchmarks import procs
from benchmarks.report import Row, print_table
from broker.client import AsyncBatonClient
from broker.embedded_redis import free_port

CONTRACT = """
name: late_{i}
partitioned: daily
deadline: "{at}"
when: {{all_of: [bench.a_{i}, bench.b_{i}]}}
trigger: {{target: hook}}
"""
TICK = 0.2


def _next_minute(lead: float) -> datetime:
    soon = datetime.now(UTC) + timedelta(seconds=lead)
    return soon.replace(second=0, microsecond=0) + timedelta(minutes=1)


async def _baton(url: str, tmp: Path, n: int) -> list[float]:
    deadline = _next_minute(lead=30)
    day = (deadline.date() - timedelta(days=1)).isoformat()  # ends at 00:00 of that date
    at = deadline.strftime("%H:%M")
    contracts = {f"c{i}.yaml": CONTRACT.format(i=i, at=at) for i in range(n)}
    sink_port = free_port()
    out = tmp / "baton-alerts.txt"
    sink = subprocess.Popen([sys.executable, "-m", "benchmarks.sink", str(sink_port), str(out)])
    sink_url = f"http://127.0.0.1:{sink_port}"
    config = procs.write_config(
        tmp, url, free_port(), contracts,
        targets={"hook": {"kind": "webhook", "url": sink_url + "/hook"}},
        alerts=[{"kind": "webhook", "url": sink_url + "/alerts"}],
    )  # fmt: skip
    baton = procs.start(config, "run")
    try:
        async with AsyncBatonClient(redis_url=url) as client:
            await client.publish_many(
                {"dataset": f"bench.a_{i}", "partition": day, "event_id": f"a{i}"} for i in range(n)
            )
        await _sleep_until(deadline + timedelta(seconds=10))
    finally:
        procs.stop(baton)
        sink.terminate()
        sink.wait(timeout=10)
    return [float(x) for x in out.read_text().split()] if out.exists() else []


async def _raw(url: str, tmp: Path, n: int) -> list[float]:
    """The same shape without Baton: members due at one instant, a 0.2 s poller."""
    deadline = _next_minute(lead=5)
    sink_port = free_port()
    out = tmp / "raw-alerts.txt"
    sink = subprocess.Popen([sys.executable, "-m", "benchmarks.sink", str(sink_port), str(out)])
    client = redis.Redis.from_url(url)
    key = "bench:raw:deadlines"
    await client.zadd(key, {f"m{i}": deadline.timestamp() for i in range(n)})
    try:
        async with httpx.AsyncClient() as http:
            await _wait_listening(sink_port)
            stop = deadline + timedelta(seconds=10)
            while datetime.now(UTC) < stop:
                due: list[Any] = await client.zrangebyscore(key, "-inf", time.time())
                for raw in due:
                    if await client.zrem(key, raw):
                        body = {"text": "missed", "baton": {"deadline": deadline.isoformat()}}
                        await http.post(f"http://127.0.0.1:{sink_port}/alerts", json=body)
                await asyncio.sleep(TICK)
    finally:
        await client.aclose()
        sink.terminate()
        sink.wait(timeout=10)
    return [float(x) for x in out.read_text().split()] if out.exists() else []


async def _wait_listening(port: int) -> None:
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return


async def _sleep_until(instant: datetime) -> None:
    await asyncio.sleep(max(0.0, (instant - datetime.now(UTC)).total_seconds()))


def _cut(delays: list[float], q: float) -> float:
    ordered = sorted(delays)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] * 1000


async def main(n: int = 100) -> None:
    with procs.fresh_redis() as (url, tmp):
        raw = await _raw(url, tmp, n)
        baton = await _baton(url, tmp, n)
    rows = [
        Row(f"raw poller: alert delay p50, {n} deadlines at once", _cut(raw, 0.5), "ms"),
        Row(f"raw poller: alert delay p99, {n} deadlines at once", _cut(raw, 0.99), "ms"),
        Row(f"Baton: alert delay p50, {n} deadlines at once", _cut(baton, 0.5), "ms",
            _cut(baton, 0.5) / _cut(raw, 0.5)),
        Row(f"Baton: alert delay p99, {n} deadlines at once", _cut(baton, 0.99), "ms",
            _cut(baton, 0.99) / _cut(raw, 0.99)),
        Row("alerts received / deadlines missed", len(baton) / n, "fraction"),
    ]  # fmt: skip
    print_table(rows)
    print(json.dumps({"baton_alerts": len(baton), "raw_alerts": len(raw)}))


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
