"""Matching cost against the number of loaded contracts (it must not grow with it)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from benchmarks.report import Row
from broker.contracts.model import Contract
from broker.core.events import Event
from broker.matching.matcher import Matcher


def _contracts(n: int) -> list[Contract]:
    hot = {"name": "hot", "partitioned": "daily", "when": {"all_of": ["bench.hot", "bench.other"]},
           "trigger": {"target": "hook"}}  # fmt: skip
    others = [
        {"name": f"c{i}", "partitioned": "daily", "when": f"ds.{i}", "trigger": {"target": "hook"}}
        for i in range(n - 1)
    ]
    return [Contract.parse(c) for c in [hot, *others]]


def _plan_time(matcher: Matcher, events: int) -> float:
    now = datetime(2026, 11, 24, tzinfo=UTC)
    batch = [
        Event(dataset="bench.hot", partition=f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}",
              event_id=f"e{i}", occurred_at=now)
        for i in range(events)
    ]  # fmt: skip
    start = time.perf_counter()
    for i, event in enumerate(batch):
        plan = matcher.plan(event, now, f"{i}-0")
        assert len(plan.ops) == 1
    return (time.perf_counter() - start) / events


def flat_in_contracts(sizes: tuple[int, int]) -> list[Row]:
    small, large = sizes
    times = {}
    for n in sizes:
        matcher = Matcher(_contracts(n))
        _plan_time(matcher, 2_000)  # warm the caches
        times[n] = min(_plan_time(matcher, 20_000) for _ in range(3))
    return [
        Row(f"match one event, {small:,} contracts", times[small] * 1e6, "us/event"),
        Row(
            f"match one event, {large:,} contracts",
            times[large] * 1e6,
            "us/event",
            times[large] / times[small],
            "<= 1.2x",
        ),
    ]
