"""`baton explain` and `baton triggers`: read the state in Redis and render it."""

from __future__ import annotations

import json
from dataclasses import asdict

from broker.control.audit import AuditTrail, cli_actor
from broker.control.explain import explain_from_store, render_report
from broker.control.live import LiveState
from broker.core.errors import ConfigError
from broker.core.settings import Settings
from broker.followup import dlq
from broker.matching.loaded import load_checked
from broker.runtime import Runtime


async def explain_command(
    settings: Settings, name: str, partition: str | None, as_json: bool
) -> str:
    contract = load_checked(settings).by_name().get(name)
    runtime = await Runtime.open(settings)
    try:
        if contract is None:
            note = await LiveState(runtime.store).removed_note(name)
            raise ConfigError(note or f"no contract named {name!r} in {settings.contracts}")
        if partition is None and contract.partitioned != "none":
            known = await runtime.store.partitions_of(name)
            return _partition_list(name, known, as_json)
        report = await explain_from_store(runtime.store, contract, partition or "")
    finally:
        await runtime.close()
    if as_json:
        return json.dumps(report, indent=2)
    return render_report(report)


def _partition_list(name: str, known: list[dict[str, object]], as_json: bool) -> str:
    if as_json:
        return json.dumps({"contract": name, "partitions": known}, indent=2)
    if not known:
        return f"{name}: no events recorded for any partition yet"
    lines = [f"{name}: partitions with recorded inputs (newest first)"]
    for item in known:
        state = f"fired {item['trigger_id']}" if item["fired"] else "waiting"
        lines.append(f"  {item['partition']}  {state}")
    lines.append(f"run `baton explain {name} PARTITION` for one of them")
    return "\n".join(lines)


async def triggers_command(settings: Settings, limit: int, as_json: bool) -> str:
    runtime = await Runtime.open(settings)
    try:
        records = await runtime.store.recent_triggers(limit)
    finally:
        await runtime.close()
    if as_json:
        return json.dumps([{k: v for k, v in asdict(r).items() if k != "inputs"} for r in records])
    if not records:
        return "no triggers yet"
    lines = [f"{'TRIGGER':<44} {'STATE':<11} {'ATT':>3}  {'RUN':<10} DOWNSTREAM / LAST ERROR"]
    for r in records:
        tail = r.downstream_url or r.downstream_ref or r.last_error
        if r.warning:
            tail += f"  ({r.warning})"
        lines.append(f"{r.id:<44} {r.state:<11} {r.attempts:>3}  {r.run_state or '-':<10} {tail}")
    return "\n".join(lines)


async def dlq_list_command(settings: Settings, limit: int, as_json: bool) -> str:
    runtime = await Runtime.open(settings)
    try:
        letters = await dlq.list_dead(runtime.store, limit)
    finally:
        await runtime.close()
    if as_json:
        return json.dumps(letters)
    if not letters:
        return "no dead letters"
    lines = [f"{'TRIGGER':<44} {'AT':<26} ERROR"]
    lines += [f"{d['trigger_id']:<44} {d['at'][:25]:<26} {d['error']}" for d in letters]
    return "\n".join(lines)


async def dlq_retry_command(settings: Settings, trigger_ids: list[str] | None) -> tuple[str, bool]:
    runtime = await Runtime.open(settings)
    try:
        result = await dlq.retry(runtime.store, trigger_ids)
        trail = AuditTrail(runtime.redis, runtime.store.keys)
        for trigger_id in result["retried"]:
            await trail.record(cli_actor(), "dlq.retry", trigger_id, "ok", via="cli")
    finally:
        await runtime.close()
    lines = [f"retried {t}" for t in result["retried"]]
    lines += [f"not a dead letter: {t}" for t in result["not_dead"]]
    return "\n".join(lines) or "no dead letters", not result["not_dead"]
