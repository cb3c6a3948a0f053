"""The worker's background duties, each in a loop of its own.

Following runs (one lane per target), moving due retries, the targets' gates, sending
alerts, the deadline clock, backfills and reclaiming abandoned entries: each is a
`Duty` with its own task, so a slow one (a hung orchestrator, an alert sink that times
out) delays only itself. A round returns how long until the duty has work again; a
duty can be woken before that (a dispatch wakes its target's tracking lane).
A duty that polls (`polling`) looks every `BUSY_S` while it finds work, or has some to
watch (a deadline on the clock, a backfill running), and backs off to `IDLE_S` when it
finds none: an idle worker's rounds were most of its CPU (12.5 ms a second, 25 rounds).

Each finished round is noted in Redis (`state.duties`, at most every few seconds per
duty), so `/readyz` and `/metrics`, from any process, say which duty is behind and by
how much, and which no worker has run lately.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from broker.state.duties import DutyBeats
from broker.state.health import RedisHealth, is_down

log = logging.getLogger("baton.worker")

# After a round that failed: how long until the next try.
FAILED_PAUSE_S = 1.0
# A polling duty's rest while it finds work, and the most it backs off to without.
BUSY_S = 0.2
IDLE_S = 1.0


@dataclass
class Duty:
    name: str
    round: Callable[[], Awaitable[float]]  # seconds until it has work again (0: now)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    drain: Callable[[], Awaitable[None]] | None = None  # at shutdown


def every(seconds: float, round: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[float]]:
    """A round that runs `round` and then rests `seconds`."""

    async def timed() -> float:
        await round()
        return seconds

    return timed


def polling(
    round: Callable[[], Awaitable[int]], watching: Callable[[], bool] | None = None
) -> Callable[[], Awaitable[float]]:
    """A round that runs `round` (which returns how much work it did), then rests
    `BUSY_S` if it did some or `watching()` says there is some to watch, else twice its
    last rest, up to `IDLE_S`."""
    rest = BUSY_S

    async def timed() -> float:
        nonlocal rest
        did = await round()
        rest = BUSY_S if did or (watching is not None and watching()) else min(2 * rest, IDLE_S)
        return rest

    return timed


async def run_duty(duty: Duty, stop: asyncio.Event, health: RedisHealth, beats: DutyBeats) -> None:
    """`duty`'s rounds until `stop` is set; a failed round is logged (Redis away: said
    once, by `health`) and tried again, never the end of the loop."""
    while not stop.is_set():
        try:
            pause = await duty.round()
            await beats.beat(duty.name)
        except Exception as exc:  # a broken round must not end the duty
            pause = FAILED_PAUSE_S
            if is_down(exc):
                health.lost(exc)
            else:
                log.exception("%s: a round failed; trying again", duty.name)
        if pause <= 0:
            await asyncio.sleep(0)  # the others' turn
            continue
        await _rest(duty.wake, stop, pause)
    if duty.drain is not None:
        await duty.drain()


async def _rest(wake: asyncio.Event, stop: asyncio.Event, seconds: float) -> None:
    """Until `seconds` pass, `wake` is set or `stop` is."""
    waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())]
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
