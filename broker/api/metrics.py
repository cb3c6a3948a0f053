"""GET /metrics: Prometheus text exposition, read from Redis at scrape time.

Counters live in one Redis hash (`<ns>:stats`) that the Lua scripts increment in the same
step as the thing they count, so every API process answers the same numbers, a restart
loses none, and several workers add up. Gauges are read from the streams and sets.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from broker.state.duties import report as duty_report
from broker.state.util import text

router = APIRouter(tags=["health"])

# (name, type, help, [(labels, field of the stats hash)])
COUNTERS: list[tuple[str, str, str, list[tuple[dict[str, str], str]]]] = [
    ("baton_events_accepted_total", "counter", "Events accepted into the stream.",
     [({}, "events_accepted")]),
    ("baton_events_duplicate_total", "counter", "Events refused as duplicates of an event_id.",
     [({}, "events_duplicate")]),
    ("baton_triggers_fired_total", "counter",
     "Triggers claimed, by cause: an event, re-evaluation after a contract change, "
     "a deadline with on_deadline: trigger, a backfill.",
     [({"cause": c}, f"fired:{c}") for c in ("event", "reevaluation", "deadline", "backfill")]),
    ("baton_dispatches_total", "counter",
     "Dispatch attempts by outcome (waiting: for its target; failed: dead-lettered).",
     [({"outcome": o}, f"dispatch:{o}")
      for o in ("succeeded", "retrying", "waiting", "failed")]),
    ("baton_deadline_alerts_total", "counter", "Missed deadlines, by what was done.",
     [({"kind": k}, f"alerts:deadline_{k}") for k in ("missed", "forced")]),
]  # fmt: skip


async def render(request: Request) -> str:
    runtime = request.app.state.runtime
    keys = runtime.store.keys
    redis = runtime.redis
    targets = sorted(runtime.settings.targets)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.stats)
        pipe.get(keys.backlog)
        pipe.xlen(keys.events)
        pipe.zcard(keys.retries)
        pipe.xlen(keys.dead_letters)
        pipe.zcard(keys.deadlines)
        pipe.hgetall(keys.contracts_loaded)
        pipe.zcard(keys.tracking)
        for target in targets:
            pipe.zcard(keys.tracking_of(target))
        stats_raw, backlog, events, retries, dead, watched, loaded, *tracked = await pipe.execute()
    stats = {text(k): int(v) for k, v in stats_raw.items()}
    out: list[str] = []
    for name, kind, about, fields in COUNTERS:
        _family(out, name, kind, about, [(labels, stats.get(f, 0)) for labels, f in fields])
    undelivered, in_flight = await _dispatch_queue(runtime)
    gauges: list[tuple[str, str, list[tuple[dict[str, str], float]]]] = [
        ("baton_events_backlog", "Events accepted and not yet matched.", [({}, int(backlog or 0))]),
        ("baton_events_stream_entries", "Entries kept in the events stream (for replay).",
         [({}, events)]),
        ("baton_triggers_queued", "Triggers waiting for a dispatcher, or being dispatched.",
         [({"state": "undelivered"}, undelivered), ({"state": "in_flight"}, in_flight)]),
        ("baton_retries_scheduled", "Triggers waiting for their next attempt.", [({}, retries)]),
        ("baton_dead_letters", "Entries in the dead-letter stream.", [({}, dead)]),
        ("baton_runs_tracked", "Downstream runs being followed to their end, by target.",
         [({"target": t}, n) for t, n in zip(["", *targets], tracked, strict=True)
          if t or n]),
        ("baton_deadlines_watched", "Partitions on the deadline clock.", [({}, watched)]),
    ]  # fmt: skip
    holder = getattr(request.app.state, "holder", None)
    contracts = request.app.state.contracts
    versions = Counter(_version(v) for v in loaded.values())
    gauges += [
        ("baton_contracts", "Contracts in the set this process runs.",
         [({}, len(contracts.by_name()))]),
        ("baton_contracts_info", "The contract set version this process runs.",
         [({"version": contracts.version}, 1)]),
        ("baton_contracts_reload_failing", "1 while the newest edit of the folder is refused.",
         [({}, 1 if holder is not None and holder.error else 0)]),
        ("baton_processes", "Baton processes by the contract set version they run.",
         [({"version": v}, n) for v, n in sorted(versions.items())]),
    ]  # fmt: skip
    gauges += await _targets(runtime)
    gauges += await _duties(runtime, targets)
    for gauge, about, series in gauges:
        _family(out, gauge, "gauge", about, series)
    return "\n".join(out) + "\n"


async def _targets(runtime: Any) -> list[tuple[str, str, list[tuple[dict[str, str], float]]]]:
    """Per target: runs in flight (as its limit counts them), triggers waiting for it,
    and whether its circuit breaker is open."""
    states = await runtime.store.gates.states(sorted(runtime.settings.targets))
    return [
        ("baton_target_in_flight", "Runs admitted to a target with limits, not yet ended.",
         [({"target": t}, s["in_flight"]) for t, s in states.items()]),
        ("baton_target_waiting", "Triggers waiting for a target (a limit, its breaker).",
         [({"target": t}, s["waiting"]) for t, s in states.items()]),
        ("baton_target_breaker_open", "1 while a target's circuit breaker is not closed.",
         [({"target": t}, int(s["breaker"] != "closed")) for t, s in states.items()]),
    ]  # fmt: skip


async def _duties(
    runtime: Any, targets: list[str]
) -> list[tuple[str, str, list[tuple[dict[str, str], float]]]]:
    """Per background duty: how long its oldest due work has waited, and how long ago
    a worker last finished a round of it (absent: never)."""
    duties = await duty_report(runtime.redis, runtime.store.keys, targets)
    return [
        ("baton_duty_behind_seconds", "How long a duty's oldest due work has waited.",
         [({"duty": d}, r["behind_s"]) for d, r in duties.items() if r["behind_s"] is not None]),
        ("baton_duty_last_round_seconds", "Seconds since a worker last finished a round of a duty.",
         [({"duty": d}, r["last_round_s"]) for d, r in duties.items()
          if r["last_round_s"] is not None]),
    ]  # fmt: skip


async def _dispatch_queue(runtime: Any) -> tuple[int, int]:
    """(entries no dispatcher has read yet, entries read and not yet acked)."""
    groups: Any = await runtime.redis.xinfo_groups(runtime.store.keys.triggers)
    for group in groups:
        if text(group["name"]) == runtime.store.keys.dispatchers_group:
            return int(group.get("lag") or 0), int(group["pending"])
    return 0, 0


def _version(raw: bytes | str) -> str:
    return str(json.loads(raw).get("version", ""))


def _family(
    out: list[str], name: str, kind: str, about: str, series: list[tuple[dict[str, str], float]]
) -> None:
    out.append(f"# HELP {name} {about}")
    out.append(f"# TYPE {name} {kind}")
    for labels, value in series:
        shown = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        out.append(f"{name}{{{shown}}} {value}" if shown else f"{name} {value}")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus metrics: counters since the namespace began, and queue gauges."""
    body = await render(request)
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
