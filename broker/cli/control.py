"""`baton pause`, `baton resume`, `baton audit`: operator commands, through the API.

They go through Baton's HTTP API (not straight to Redis) so that the API checks the
caller's role and writes the audit trail under the caller's name: `--token` or
`BATON_TOKEN` is an operator's (or admin's) token once principals are configured.
"""

from __future__ import annotations

import json
from typing import Any

import click
import httpx

from broker.cli.common import api_url, settings_of


def api_call(
    ctx: click.Context, method: str, path: str, url: str | None, token: str | None,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Call the API and return its JSON; a refusal or an unreachable API is a one-line
    error, never a traceback."""

    base = (url or api_url(settings_of(ctx))).rstrip("/")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        answer = httpx.request(method, base + path, json=body, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach Baton at {base}: {exc}") from exc
    try:
        data: Any = answer.json()
    except ValueError:
        data = {}
    if answer.status_code >= 400:
        detail = data.get("detail") if isinstance(data, dict) else None
        raise click.ClickException(f"HTTP {answer.status_code}: {detail or answer.text[:300]}")
    return data if isinstance(data, dict) else {}


_URL = click.option("--url", help="Baton's API (default: from the config)")
_TOKEN = click.option("--token", envvar="BATON_TOKEN", help="an operator's token (env BATON_TOKEN)")


@click.command()
@click.argument("contract")
@click.option("--reason", default="", help="why, for the audit trail and the status page")
@_URL
@_TOKEN
@click.pass_context
def pause(ctx: click.Context, contract: str, reason: str, url: str | None,
          token: str | None) -> None:  # fmt: skip
    """Stop CONTRACT firing: its inputs are still recorded, deadlines still alert."""
    data = api_call(ctx, "POST", f"/v1/contracts/{contract}/pause", url, token,
                    {"reason": reason})  # fmt: skip
    paused = data.get("paused") or {}
    click.echo(f"{contract} paused (by {paused.get('by', '?')} at {paused.get('at', '?')[:19]})")


@click.command()
@click.argument("contract")
@click.option("--no-fire", is_flag=True,
              help="mark what completed while paused as done, without firing it")  # fmt: skip
@click.option("--json", "as_json", is_flag=True)
@_URL
@_TOKEN
@click.pass_context
def resume(ctx: click.Context, contract: str, no_fire: bool, as_json: bool, url: str | None,
           token: str | None) -> None:  # fmt: skip
    """Let CONTRACT fire again; what completed while it was paused fires once (unless
    --no-fire)."""
    data = api_call(ctx, "POST", f"/v1/contracts/{contract}/resume", url, token,
                    {"fire": not no_fire})  # fmt: skip
    if as_json:
        click.echo(json.dumps(data))
        return
    note = "" if data.get("was_paused") else " (it was not paused)"
    click.echo(f"{contract} resumed{note}")
    for item in data.get("fired", []):
        click.echo(f"  fired {item['trigger_id']}")
    for partition in data.get("skipped", []):
        click.echo(f"  skipped {partition} (completed while paused; marked done)")


@click.command()
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@_URL
@_TOKEN
@click.pass_context
def audit(ctx: click.Context, limit: int, as_json: bool, url: str | None,
          token: str | None) -> None:  # fmt: skip
    """The audit trail, newest first: who did what, and when."""
    entries = api_call(ctx, "GET", f"/v1/audit?limit={limit}", url, token).get("audit", [])
    if as_json:
        click.echo(json.dumps(entries))
        return
    for e in entries:
        detail = f" ({e['detail']})" if e.get("detail") else ""
        click.echo(f"{e['at'][:19]}  {e['actor']:<16} {e['action']:<18} "
                   f"{e.get('subject') or '-'} -> {e['outcome']}{detail}")  # fmt: skip
    if not entries:
        click.echo("the audit trail is empty")


COMMANDS = (pause, resume, audit)
