"""`baton backfill`: submit, watch with a progress bar, and show status."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click

from broker.contracts.model import Contract
from broker.control.audit import AuditTrail, cli_actor
from broker.core.errors import ConfigError
from broker.core.settings import Settings
from broker.matching.loaded import load_checked
from broker.runtime import Runtime
from broker.time.backfill import BackfillRejected, dry_run, status, submit


async def run_backfill(
    settings: Settings, name: str, start: str, end: str, *, order: str, max_in_flight: int,
    force: bool, dry_run: bool, detach: bool, as_json: bool,
) -> None:  # fmt: skip
    contract = load_checked(settings).by_name().get(name)
    if contract is None:
        raise ConfigError(f"no contract named {name!r} in {settings.contracts}")
    runtime = await Runtime.open(settings)
    try:
        if dry_run:
            rows = await _dry(runtime, contract, start, end, order, force)
            click.echo(json.dumps(rows, indent=2) if as_json else _plan_text(rows))
            return
        try:
            backfill = await submit(runtime.store, contract, start, end, order=order,
                                    max_in_flight=max_in_flight, force=force)  # fmt: skip
        except BackfillRejected as exc:
            raise ConfigError(str(exc)) from exc
        detail = f"{contract.name} {start}..{end} order={order} force={force}"
        await AuditTrail(runtime.redis, runtime.store.keys).record(
            cli_actor(), "backfill.start", backfill.id, "ok", detail=detail, via="cli"
        )
        if detach or as_json:
            report = await status(runtime.store, backfill)
            click.echo(json.dumps(report, indent=2) if as_json else f"started {backfill.id}")
            return
        click.echo(f"backfill {backfill.id}: {len(backfill.plan)} partitions of {name}, "
                   f"{order}, at most {max_in_flight} runs in flight")  # fmt: skip
        await _follow(runtime, backfill.id, len(backfill.plan))
    finally:
        await runtime.close()


async def _dry(runtime: Runtime, contract: Contract, start: str, end: str, order: str,
               force: bool) -> list[dict[str, Any]]:  # fmt: skip
    try:
        return await dry_run(runtime.store, contract, start, end, order=order, force=force)
    except BackfillRejected as exc:
        raise ConfigError(str(exc)) from exc


def _plan_text(rows: list[dict[str, Any]]) -> str:
    lines = [f"{len(rows)} partitions (nothing is started by --dry-run):"]
    for row in rows:
        if row["ran_as"]:
            why = f"ran as {row['ran_as']}"
        elif row["ready"]:
            why = "inputs complete"
        else:
            why = "missing " + ", ".join(row["missing"])
        lines.append(f"  {row['partition']:<16} {row['action']:<6} {why}")
    return "\n".join(lines)


async def _follow(runtime: Runtime, backfill_id: str, planned: int) -> None:
    """A progress bar until the workers have carried it out (Ctrl-C leaves it running)."""
    shown = 0
    with click.progressbar(length=planned, label="partitions") as bar:
        while True:
            found = await runtime.store.backfills.get(backfill_id)
            if found is None:
                return
            bar.update(found.pos - shown)
            shown = found.pos
            if found.state != "running":
                break
            await asyncio.sleep(0.5)
    click.echo(f"{found.state}: {found.fired} fired, {found.skipped} skipped "
               f"(`baton backfill status {backfill_id}`)")  # fmt: skip


async def show_status(settings: Settings, backfill_id: str | None, as_json: bool) -> str:
    """One backfill, or the recent ones, as text or JSON (with the runs-in-flight trace)."""
    runtime = await Runtime.open(settings)
    try:
        store = runtime.store
        if backfill_id is None:
            found = await store.backfills.recent()
            reports = [await status(store, b) for b in found]
        else:
            one = await store.backfills.get(backfill_id)
            if one is None:
                raise ConfigError(f"no backfill {backfill_id!r}")
            reports = [await status(store, one)]
    finally:
        await runtime.close()
    if as_json:
        return json.dumps(reports if backfill_id is None else reports[0], indent=2)
    if not reports:
        return "no backfills yet"
    return "\n".join(_status_line(r) for r in reports)


def _status_line(r: dict[str, Any]) -> str:
    return (f"{r['id']}  {r['contract']} {r['from']}..{r['to']}  {r['state']}  "
            f"{r['done']}/{r['planned']} done, {r['fired']} fired, {r['skipped']} skipped, "
            f"{len(r['in_flight'])} in flight")  # fmt: skip
