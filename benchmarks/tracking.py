"""A burst of partitions, and a `produces` chain behind it: how fast runs are followed.

One real `baton worker` and a raw webhook sink. N daily partitions of a 2-input
contract are published at once (2N events, in batches of 500); while the worker works
through them, a chain of two webhook contracts joined by `produces` is started once
every 0.25 s. Measured:

- the dispatch rate over the burst;
- how long after the last dispatch the tracking set is empty: tracking that keeps up
  with dispatch leaves nothing to follow by then;
- a chain hop: the upstream trigger dispatched -> the downstream trigger dispatched
  (its run followed to its end, `produces` published, matched, fired), p50 and p99.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import redis.asyncio as redis

from benchmarks import procs
from benchmarks.report import Row
from broker.client import AsyncBatonClient
from broker.embedded_redis import free_port
from broker.state.keys import Keys
from broker.state.redis_store import RedisStore

NAMESPACE = "bench-tracking"
CONTRACTS = {
    "burst.yaml": """
name: burst
partitioned: daily
when: {all_of: [bench.a, bench.b]}
trigger: {target: hook, body: {sent: "0"}}
""",
    "chain.yaml": """
name: hop_a
partitioned: daily
when: bench.chain
trigger: {target: hook, body: {sent: "0"}}
produces: [bench.mid]
---
name: hop_b
partitioned: daily
when: bench.mid
trigger: {target: hook, body: {sent: "0"}}
""",
}
BATCH = 500
CHAIN_EVERY_S = 0.25
WAIT_S = 600


async def burst(url: str, tmp: Path, partitions: int) -> list[Row]:
    sink_port = free_port()
    sink = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.sink", str(sink_port), str(tmp / "tracking.txt")]
    )
    hook = {"hook": {"kind": "webhook", "url": f"http://127.0.0.1:{sink_port}/hook"}}
    config = procs.write_config(tmp, url, free_port(), CONTRACTS, targets=hook,
                                namespace=NAMESPACE)  # fmt: skip
    worker = procs.start(config, "worker")
    client = redis.Redis.from_url(url)
    store = RedisStore(client, Keys(NAMESPACE), max_backlog=10_000_000, dedup_ttl_s=3600)
    try:
        await asyncio.sleep(3)  # worker and sink start-up
        days = [date(1900, 1, 1) + timedelta(days=d) for d in range(partitions)]
        chains = [date(1800, 1, 1) + timedelta(days=d) for d in range(60)]
        started = time.monotonic()
        async with AsyncBatonClient(redis_url=url, namespace=NAMESPACE) as baton:
            chaining = asyncio.create_task(_chains(baton, chains))
            for i in range(0, partitions, BATCH):
                chunk = days[i : i + BATCH]
                both = ("bench.a", "bench.b")
                await baton.publish_many(
                    [{"dataset": ds, "partition": d.isoformat()} for d in chunk for ds in both]
                )
            # The burst's own triggers, while the chains go on (60 x CHAIN_EVERY_S: a rate
            # over them all would be 15 s's worth whatever the worker does).
            stats = store.keys.stats
            burst_done = await _wait(lambda: _burst_dispatched(client, store, stats, chains),
                                     partitions, WAIT_S)  # fmt: skip
            await chaining
        total = partitions + 2 * len(chains)
        dispatched_s = burst_done - started
        last_dispatch = await _wait(lambda: _dispatched(client, stats), total, WAIT_S)
        tracking = store.keys.tracking_of("hook")
        empty = await _wait(lambda: _left(client, tracking), 0, WAIT_S, until_zero=True)
        hops = await _hops(store, chains)
    finally:
        procs.stop(worker)
        sink.terminate()
        sink.wait(timeout=10)
        await client.aclose()
    cuts = statistics.quantiles(hops, n=100) if len(hops) > 1 else [float("nan")] * 99
    return [
        Row(f"burst of {partitions:,} partitions: dispatched", partitions / dispatched_s,
            "triggers/s"),
        # Tracking slower than dispatch leaves a backlog to follow after the last dispatch.
        Row("  tracking set empty after the last dispatch", empty - last_dispatch, "s", None,
            "<= 2 s"),
        Row("  chain hop behind the burst p50", cuts[49] * 1000, "ms"),
        Row("  chain hop behind the burst p99", cuts[98] * 1000, "ms", None, "<= 2,000 ms"),
    ]  # fmt: skip


async def _chains(baton: AsyncBatonClient, days: list[date]) -> None:
    for day in days:
        await baton.publish("bench.chain", day.isoformat())
        await asyncio.sleep(CHAIN_EVERY_S)


async def _dispatched(client: redis.Redis, stats: str) -> int:
    return int(await client.hget(stats, "dispatch:succeeded") or 0)


async def _burst_dispatched(
    client: redis.Redis, store: RedisStore, stats: str, chains: list[date]
) -> int:
    """Dispatches so far, less the chains' (their records that say succeeded)."""
    ids = [f"baton:hop_{x}:{day.isoformat()}:0" for day in chains for x in "ab"]
    async with client.pipeline(transaction=False) as pipe:
        pipe.hget(stats, "dispatch:succeeded")
        for trigger_id in ids:
            pipe.hget(store.keys.trigger(trigger_id), "state")
        replies = await pipe.execute()
    return int(replies[0] or 0) - sum(1 for state in replies[1:] if state == b"succeeded")


async def _left(client: redis.Redis, key: str) -> int:
    return int(await client.zcard(key))


async def _wait(read: object, target: int, timeout: float, until_zero: bool = False) -> float:
    """When `read()` reached `target` (0 when `until_zero`): a monotonic time."""
    deadline = time.monotonic() + timeout
    while True:
        value = await read()  # type: ignore[operator]
        if (value == 0) if until_zero else (value >= target):
            return time.monotonic()
        if time.monotonic() > deadline:
            raise RuntimeError(f"waited {timeout}s: {value} of {target}")
        await asyncio.sleep(0.05)


async def _hops(store: RedisStore, days: list[date]) -> list[float]:
    """Per chained day: hop_b's dispatch time minus hop_a's (both as recorded)."""
    out = []
    for day in days:
        a = await store.get_trigger(f"baton:hop_a:{day.isoformat()}:0")
        b = await store.get_trigger(f"baton:hop_b:{day.isoformat()}:0")
        if a is None or b is None:
            continue
        out.append((_at(b.updated_at) - _at(a.updated_at)).total_seconds())
    return out


def _at(value: str | datetime) -> datetime:
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def _alone(partitions: int) -> None:
    from benchmarks.report import print_table  # noqa: PLC0415

    with procs.fresh_redis() as (url, tmp):
        rows = await burst(url, tmp, partitions)
    print_table(rows)


if __name__ == "__main__":  # python -m benchmarks.tracking [PARTITIONS]
    import uvloop

    uvloop.run(_alone(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000))
