"""What Baton keeps in Redis, per partition, and whether it stops growing.

One real `baton worker` and a raw webhook sink, against a fresh Redis.

- **Footprint.** N daily partitions of a 2-input contract, both inputs published: Redis
  memory per fired partition while it is inside the history window (everything the
  partition leaves: its match state, trigger record, stream entries, dedup keys).
  Then N partitions of another 2-input contract with one input only: memory per open
  (contract, partition, input). Each is split by key kind (MEMORY USAGE of a sample).
- **Soak.** With every window short (`history_retention`, `events_retention` and
  `dedup_ttl` of WINDOW_S), partitions are published at a steady rate; Redis memory is
  sampled all along. Past the first window it should hold steady: what is written is
  let go at the rate it arrives.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import redis.asyncio as redis

from benchmarks import procs
from benchmarks.report import Row
from broker.client import AsyncBatonClient
from broker.embedded_redis import free_port

NAMESPACE = "baton"  # the default: key names are part of what is measured
CONTRACTS = {
    "fired.yaml": """
name: fired
partitioned: daily
when: {all_of: [bench.a, bench.b]}
trigger: {target: hook, body: {sent: "0"}}
---
name: open
partitioned: daily
when: {all_of: [bench.c, bench.d]}
trigger: {target: hook, body: {sent: "0"}}
""",
}
BATCH = 500
WAIT_S = 900
SAMPLE = 200  # keys of a kind whose MEMORY USAGE is averaged
WINDOW_S = 30
BACKLOG_MAX = 20_000


async def footprint(url: str, tmp: Path, partitions: int) -> list[Row]:
    """Bytes of Redis per fired partition and per open input (both inside the window)."""
    async with _baton(url, tmp, {}) as client:
        days = [(date(1900, 1, 1) + timedelta(days=d)).isoformat() for d in range(partitions)]
        before, kinds = await _used(client), await _by_kind(client)
        await _publish(url, [(ds, d) for d in days for ds in ("bench.a", "bench.b")])
        await _wait_for(client, "dispatch:succeeded", partitions)
        await _settled(client)
        fired = (await _used(client) - before) / partitions
        fired_kinds = _per(await _by_kind(client), kinds, partitions)
        await _past_the_event_window(client)
        past = (await _used(client) - before) / partitions
        before, kinds = await _used(client), await _by_kind(client)
        await _publish(url, [("bench.c", d) for d in days])
        await _settled(client)
        open_input = (await _used(client) - before) / partitions
        open_kinds = _per(await _by_kind(client), kinds, partitions)
    rows = [Row(f"Redis per fired 2-input partition ({partitions:,})", fired, "B", None,
                "<= 1,500 B")]  # fmt: skip
    rows += [Row(f"  of which {kind}", size, "B") for kind, size in fired_kinds.items()]
    rows.append(Row("  the same past the event window (events_retention, dedup_ttl)", past, "B",
                    None, "<= 1,500 B"))  # fmt: skip
    rows.append(Row("Redis per open (contract, partition, input)", open_input, "B", None,
                    "<= 500 B"))  # fmt: skip
    rows += [Row(f"  of which {kind}", size, "B") for kind, size in open_kinds.items()]
    return rows


async def soak(url: str, tmp: Path, partitions: int, window_s: int = WINDOW_S) -> list[Row]:
    """`partitions` fired 2-input partitions through a worker whose windows are all
    `window_s`, as fast as it takes them (the backlog kept under BACKLOG_MAX): Redis
    memory, sampled all along, should rise for one window and then hold."""
    window = f"{window_s}s"
    extra = {"history_retention": window, "markers_retention": f"{2 * window_s}s",
             "events_retention": window, "dedup_ttl": window}  # fmt: skip
    samples: list[tuple[int, int]] = []  # (partitions published, used_memory)
    async with _baton(url, tmp, extra) as client:
        started, base = time.monotonic(), await _used(client)
        async with AsyncBatonClient(redis_url=url, namespace=NAMESPACE,
                                    dedup_ttl=window_s) as baton:  # fmt: skip
            for i in range(0, partitions, BATCH):
                while int(await client.get(f"{NAMESPACE}:events:backlog") or 0) > BACKLOG_MAX:
                    await asyncio.sleep(0.05)
                days = [(date(1000, 1, 1) + timedelta(days=d)).isoformat()
                        for d in range(i, min(i + BATCH, partitions))]  # fmt: skip
                both = ("bench.a", "bench.b")
                await baton.publish_many([{"dataset": ds, "partition": d}
                                          for d in days for ds in both])  # fmt: skip
                if (i // BATCH) % 20 == 0:
                    samples.append((i + len(days), await _used(client) - base))
        await _wait_for(client, "dispatch:succeeded", partitions)
        elapsed = time.monotonic() - started
        samples.append((partitions, await _used(client) - base))
    half = [m for n, m in samples if n >= partitions // 2]
    peak = max(m for _, m in samples)
    rows = [Row(f"soak: {partitions:,} partitions, every window {window}", partitions / elapsed,
                "triggers/s")]  # fmt: skip
    for share in (0.25, 0.5, 0.75, 1.0):
        n, m = min(samples, key=lambda s: abs(s[0] - partitions * share))
        rows.append(Row(f"  Redis memory after {n:,} partitions", m / 2**20, "MiB"))
    rows += [
        Row("  Redis memory peak", peak / 2**20, "MiB"),
        # Steady: the second half of the run holds what the first window built.
        Row("  second half: last / first sample", half[-1] / half[0] if half[0] else 0, "ratio",
            None, "<= 1.1"),
    ]  # fmt: skip
    return rows


class _baton:
    """A worker (and its sink) on `url` with `extra` settings, and a client to Redis."""

    def __init__(self, url: str, tmp: Path, extra: dict[str, Any]) -> None:
        self.url, self.tmp, self.extra = url, tmp, extra

    async def __aenter__(self) -> redis.Redis:
        port = free_port()
        self.sink = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.sink", str(port), str(self.tmp / "kept.txt")]
        )
        hook = {"hook": {"kind": "webhook", "url": f"http://127.0.0.1:{port}/hook"}}
        config = procs.write_config(self.tmp, self.url, free_port(), CONTRACTS, targets=hook,
                                    namespace=NAMESPACE, **self.extra)  # fmt: skip
        self.worker = procs.start(config, "worker")
        self.client = redis.Redis.from_url(self.url)
        await asyncio.sleep(3)  # worker and sink start-up
        return self.client

    async def __aexit__(self, *exc: object) -> None:
        procs.stop(self.worker)
        self.sink.terminate()
        self.sink.wait(timeout=10)
        await self.client.aclose()


async def _past_the_event_window(client: redis.Redis) -> None:
    """What Redis holds of the partitions once their events are past `events_retention`
    and `dedup_ttl` (7 days each by default, of a 30-day history window): the stream
    trimmed as the worker trims it, and the dedup keys gone as Redis expires them."""
    await client.xtrim(f"{NAMESPACE}:events", minid=f"{int(time.time() * 1000) + 1}-0")
    seen = [k async for k in client.scan_iter(f"{NAMESPACE}:s:*", count=1000)]
    for i in range(0, len(seen), 1000):
        await client.delete(*seen[i : i + 1000])


async def _publish(url: str, events: list[tuple[str, str]]) -> None:
    async with AsyncBatonClient(redis_url=url, namespace=NAMESPACE) as baton:
        for i in range(0, len(events), BATCH):
            await baton.publish_many(
                [{"dataset": ds, "partition": p} for ds, p in events[i : i + BATCH]]
            )


async def _used(client: redis.Redis) -> int:
    """Redis memory less its passing buffers (the AOF's, and the clients' in and out):
    a rewrite of the append-only file that starts meanwhile buffers megabytes that no
    partition owns."""
    info = await client.info("memory")
    passing = ("mem_aof_buffer", "mem_clients_normal", "mem_clients_slaves")
    return int(info["used_memory"]) - sum(int(info.get(k, 0)) for k in passing)


async def _stat(client: redis.Redis, field: str) -> int:
    return int(await client.hget(f"{NAMESPACE}:stats", field) or 0)


async def _wait_for(client: redis.Redis, stat: str, target: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while (value := await _stat(client, stat)) < target:
        if time.monotonic() > deadline:
            raise RuntimeError(f"waited {WAIT_S}s for {target} {stat}: {value}")
        await asyncio.sleep(0.1)


async def _settled(client: redis.Redis) -> None:
    """Wait until the events are acked and no run is followed any more."""
    deadline = time.monotonic() + WAIT_S
    while True:
        backlog = int(await client.get(f"{NAMESPACE}:events:backlog") or 0)
        tracked = await client.zcard(f"{NAMESPACE}:tracking:hook")
        if backlog == 0 and tracked == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"waited {WAIT_S}s to settle: {backlog} events, {tracked} runs")
        await asyncio.sleep(0.1)


async def _by_kind(client: redis.Redis) -> dict[str, float]:
    """Bytes by key kind: the mean MEMORY USAGE of a sample of each kind of
    per-partition key, times how many there are; whole keys (streams, sets) as is."""
    counts: dict[str, int] = defaultdict(int)
    samples: dict[str, list[int]] = defaultdict(list)
    wholes: dict[str, int] = {}
    async for raw in client.scan_iter(f"{NAMESPACE}:*", count=1000):
        key = raw.decode()
        kind = _kind(key)
        if kind is None:
            wholes[key[len(NAMESPACE) + 1 :]] = int(await client.memory_usage(key) or 0)
            continue
        counts[kind] += 1
        if len(samples[kind]) < SAMPLE:
            samples[kind].append(int(await client.memory_usage(key) or 0))
    out = {kind: statistics.mean(samples[kind]) * counts[kind] for kind in counts}
    return {**out, **wholes}


def _per(after: dict[str, float], before: dict[str, float], n: int) -> dict[str, float]:
    """What each kind grew by, per partition, largest first (growth under 1 B left out)."""
    grown = {k: (v - before.get(k, 0)) / n for k, v in after.items()}
    return dict(sorted(((k, v) for k, v in grown.items() if v >= 1), key=lambda kv: -kv[1]))


def _kind(key: str) -> str | None:
    rest = key[len(NAMESPACE) + 1 :]
    if rest.startswith("p:"):
        return f"partition hash ({rest.split(':')[1]})"
    for prefix, kind in (("t:", "trigger record"),
                         ("s:", "dedup key"), ("fired:", "fired marker")):  # fmt: skip
        if rest.startswith(prefix):
            return kind
    return None


async def _alone(partitions: int, soaked: int) -> None:
    from benchmarks.report import print_table  # noqa: PLC0415

    with procs.fresh_redis() as (url, tmp):
        rows = await footprint(url, tmp, partitions)
    with procs.fresh_redis() as (url, tmp):
        rows += await soak(url, tmp, soaked)
    print_table(rows)


if __name__ == "__main__":  # python -m benchmarks.retention [PARTITIONS [SOAKED]]
    import uvloop

    args = [int(a) for a in sys.argv[1:3]]
    uvloop.run(_alone(*args, *[20_000, 1_000_000][len(args) :]))
