"""The raw Redis baseline: XADD with redis-py, no Baton in the way."""

from __future__ import annotations

import time

import redis


def xadd_round_trips(url: str, n: int) -> float:
    client = redis.Redis.from_url(url)
    payload = {"e": '{"dataset":"bench.raw","partition":"2026-11-23"}'}
    start = time.perf_counter()
    for _ in range(n):
        client.xadd("raw:one", payload)
    elapsed = time.perf_counter() - start
    client.delete("raw:one")
    client.close()
    return n / elapsed


def xadd_pipelined(url: str, n: int, batch: int) -> float:
    client = redis.Redis.from_url(url)
    payload = {"e": '{"dataset":"bench.raw","partition":"2026-11-23"}'}
    start = time.perf_counter()
    for _ in range(n // batch):
        pipe = client.pipeline(transaction=False)
        for _ in range(batch):
            pipe.xadd("raw:piped", payload)
        pipe.execute()
    elapsed = time.perf_counter() - start
    client.delete("raw:piped")
    client.close()
    return (n // batch * batch) / elapsed
