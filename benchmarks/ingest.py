"""Ingest rates: HTTP single events and batches against `baton api` (1 and 2 API
workers), and BatonClient batches straight to Redis."""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

from benchmarks import loadgen, procs, raw
from benchmarks.report import Row
from broker.client import AsyncBatonClient
from broker.core.settings import PrincipalSettings, ProducerSettings
from broker.embedded_redis import free_port
from broker.ingest.auth import Authenticator

ROUNDS = 5
CONTRACT = "name: sink\nwhen: bench.other\ntrigger: {target: hook}\n"
HOOK = {"hook": {"kind": "webhook", "url": "http://127.0.0.1:9/"}}


async def http(url: str, tmp: Path, n: int, piped: float) -> list[Row]:
    """Single events, then events in batches of 100, against `baton api` with 1 and with
    2 API workers. Single events are measured in ROUNDS rounds, each beside a round of
    raw XADD round trips of its own: the ratio is median over median, so a machine that
    slows down or speeds up mid-run moves both sides alike."""
    rows = []
    for workers in (1, 2):
        port = free_port()
        api = {"host": "127.0.0.1", "port": port, "workers": workers}
        # a namespace of its own: no later benchmark's worker wades through these events
        config = procs.write_config(tmp, url, port, {"c.yaml": CONTRACT}, targets=HOOK, api=api,
                                    namespace=f"bench-ingest-{workers}")  # fmt: skip
        proc = procs.start(config, "api")
        base = f"http://127.0.0.1:{port}"
        raws, singles = [], []
        try:
            procs.wait_http(f"{base}/healthz")
            await asyncio.sleep(1.0 * (workers - 1))  # the second worker starting up
            await _post(base, n // 10, per_request=1, connections=16, tag="warm")
            for r in range(ROUNDS):
                raws.append(raw.xadd_round_trips(url, n))
                singles.append(await _post(base, n, 1, 16, tag=f"r{r}"))
            batches = await _post(base, n, per_request=100, connections=4)
        finally:
            procs.stop(proc)
        label = f"{workers} API worker{'s' if workers > 1 else ''}"
        one, single = statistics.median(raws), statistics.median(singles)
        rows += [
            Row(f"  raw XADD round trips beside it, median of {ROUNDS}", one, "events/s", None,
                f"spread {_spread(raws)}"),
            Row(f"HTTP ingest, single events, {label}", single, "events/s", single / one,
                ">= 0.6x" if workers == 1 else f"spread {_spread(singles)}"),
            Row(f"HTTP ingest, batches of 100, {label}", batches, "events/s", batches / piped, ""),
        ]  # fmt: skip
    return rows


def _spread(values: list[float]) -> str:
    """How far the rounds lay apart: (max - min) / median."""
    return f"{(max(values) - min(values)) / statistics.median(values) * 100:.0f}%"


async def _post(
    base: str, n: int, per_request: int, connections: int, token: str | None = None, tag: str = ""
) -> float:
    """Events per second, `per_request` events in each POST (unique ids per run)."""
    host, run = base.removeprefix("http://"), base.rsplit(":", 1)[1] + tag

    def make(i: int) -> bytes:
        events = b",".join(
            b'{"dataset":"bench.in","partition":"2026-11-23","event_id":"%s-%d-%d"}'
            % (run.encode(), per_request, i * per_request + j)
            for j in range(per_request)
        )
        body = events if per_request == 1 else b'{"events":[' + events + b"]}"
        return loadgen.request(host, "/v1/events", body, token)

    return per_request * await loadgen.post_many(base, make, n // per_request, connections)


PRODUCER_TOKEN = "bench-producer-token-0123456789"


async def with_tokens(url: str, tmp: Path, n: int, one: float) -> list[Row]:
    """Single events with producer tokens and principals configured, against the same
    API with none, in interleaved rounds (best of each): the rate with tokens on, and
    what the token check adds to each request's time."""
    bases, running = {}, []
    for tokens in (False, True):
        port = free_port()
        auth: dict[str, object] = {}
        if tokens:
            producer = {"name": "bench", "token": PRODUCER_TOKEN, "datasets": ["*"]}
            admin = {"name": "ops", "token": "bench-admin", "role": "admin"}
            auth = {"producers": [producer], "principals": [admin]}
        config = procs.write_config(tmp, url, port, {"c.yaml": CONTRACT}, targets=HOOK,
                                    namespace=f"bench-auth-{tokens}", **auth)  # fmt: skip
        running.append(procs.start(config, "api"))
        bases[tokens] = f"http://127.0.0.1:{port}"
    best = {False: 0.0, True: 0.0}
    try:
        for base in bases.values():
            procs.wait_http(f"{base}/healthz")
        for r in range(ROUNDS):
            for tokens, base in bases.items():
                rate = await _post(base, n, 1, 16, PRODUCER_TOKEN if tokens else None, f"r{r}")
                best[tokens] = max(best[tokens], rate)
    finally:
        for proc in running:
            procs.stop(proc)
    added = best[False] / best[True] - 1
    check_us = await _token_check_us()
    share = check_us / (1e6 / best[True])
    return [
        Row("HTTP ingest, single events, tokens on", best[True], "events/s", best[True] / one,
            ">= 0.5x"),
        Row("token check, in-process", check_us, "us/request"),
        Row("token check: its share of a request's time", share * 100, "%", None, "<= 5%"),
        Row("tokens on vs off, end to end (A/B, noisy)", added * 100, "%"),
    ]  # fmt: skip


async def _token_check_us(n: int = 20_000) -> float:
    """What authenticating one request costs (best of 5 runs of `n`), in microseconds."""
    producer = ProducerSettings(name="bench", token=PRODUCER_TOKEN, datasets=["*"])
    admin = PrincipalSettings(name="ops", token="bench-admin", role="admin")
    auth = Authenticator([producer], 300, [admin])
    headers = {"authorization": f"Bearer {PRODUCER_TOKEN}", "content-type": "application/json"}

    async def first_use(signature: str, ttl: int) -> bool:
        return True

    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            await auth.authenticate(headers, b"", first_use)
        best = min(best, (time.perf_counter() - start) / n * 1e6)
    return best


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
