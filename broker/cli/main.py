"""`baton`: the command line. A composition root: settings in, parts wired, work done."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from broker.cli import logs
from broker.cli.common import api_url, run_async, settings_of
from broker.cli.control import COMMANDS as CONTROL_COMMANDS
from broker.cli.errors import BatonGroup
from broker.core.errors import BatonError
from broker.core.settings import Settings

log = logging.getLogger("baton")


@click.group(cls=BatonGroup)
@click.option("--config", "config", type=click.Path(), envvar="BATON_CONFIG", help="baton.yaml")
@click.option("-v", "--verbose", is_flag=True)
@click.pass_context
def main(ctx: click.Context, config: str | None, verbose: bool) -> None:
    """Baton: event-driven cross-DAG trigger broker."""
    logs.configure(verbose)
    ctx.obj = config
    ctx.meta["config_path"] = config


@main.command()
@click.pass_context
def run(ctx: click.Context) -> None:
    """API, workers and dispatcher in one process."""
    from broker.serve import serve  # noqa: PLC0415 - keeps `baton check` light

    path = ctx.meta["config_path"]
    run_async(lambda: serve(settings_of(ctx), api=True, worker=True, config_path=path))


@main.command()
@click.option("--sibling", is_flag=True, hidden=True, help="one of `api.workers`, started by one")
@click.pass_context
def api(ctx: click.Context, sibling: bool) -> None:
    """The HTTP API alone (`api.workers` processes of it)."""
    from broker.serve import serve  # noqa: PLC0415

    path = ctx.meta["config_path"]
    run_async(lambda: serve(settings_of(ctx), api=True, worker=False, config_path=path,
                       sibling=sibling))  # fmt: skip


@main.command()
@click.option(
    "--role",
    type=click.Choice(["all", "match", "dispatch"]),
    default="all",
    show_default=True,
    help="match events into triggers, dispatch triggers, or both",
)
@click.pass_context
def worker(ctx: click.Context, role: str) -> None:
    """Matcher and dispatcher, without the API."""
    from broker.serve import serve  # noqa: PLC0415

    run_async(lambda: serve(settings_of(ctx), api=False, worker=True, role=role))


@main.command()
@click.argument("folder", required=False, type=click.Path(path_type=Path))
@click.option("--online", is_flag=True, help="also ask the live targets (DAGs, jobs, deployments)")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def check(ctx: click.Context, folder: Path | None, online: bool, as_json: bool) -> None:
    """Validate contracts; exit 1 with `file:line: message` for each problem."""
    from broker.contracts.check import check_configured  # noqa: PLC0415

    settings = settings_of(ctx)
    contract_set, errors = check_configured(settings, folder)
    notes: list[str] = []
    if online and not errors:
        errors, notes = run_async(lambda: _check_online(settings, contract_set))
    if as_json:
        click.echo(
            json.dumps(
                {
                    "version": contract_set.version,
                    "errors": [str(e) for e in errors],
                    "notes": notes,
                }
            )
        )
    else:
        for line in [*map(str, errors), *notes]:
            click.echo(line, err=True)
    if errors:
        sys.exit(1)
    if not as_json:
        n = len(contract_set.contracts)
        where = " against the live targets" if online else ""
        click.echo(
            f"{n} contract{'s' if n != 1 else ''} OK{where} (version {contract_set.version})"
        )


async def _check_online(settings: Settings, contract_set: Any) -> tuple[list[Any], list[str]]:
    from adapters.registry import build_targets  # noqa: PLC0415
    from broker.dispatch.online import check_online  # noqa: PLC0415

    targets = build_targets(settings)
    try:
        return await check_online(contract_set, targets)
    finally:
        for target in targets.values():
            await target.aclose()


@main.command()
def schema() -> None:
    """Print the JSON Schema of the contract format, for editors."""
    from broker.contracts.model import contract_json_schema  # noqa: PLC0415

    click.echo(json.dumps(contract_json_schema(), indent=2))


@main.command()
@click.argument("folders", nargs=-1, type=click.Path())
@click.option("--against", metavar="GIT_REF", help="compare DIR with itself at this Git ref")
@click.option("--offline", is_flag=True, help="compare definitions only; read no live state")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def diff(ctx: click.Context, folders: tuple[str, ...], against: str | None, offline: bool,
         as_json: bool) -> None:  # fmt: skip
    """What changes from OLD_DIR to NEW_DIR (or `--against GIT_REF [DIR]`), per contract,
    and what that does to the live state: partitions that would fire, alert or stop."""
    from broker.cli.diff import diff_command  # noqa: PLC0415

    settings = settings_of(ctx)
    click.echo(run_async(lambda: diff_command(settings, folders, against, as_json, offline)))


@main.command()
@click.argument("folder", required=False, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot"]), default="mermaid",
              show_default=True)  # fmt: skip
@click.pass_context
def graph(ctx: click.Context, folder: Path | None, fmt: str) -> None:
    """Datasets, contracts and targets, and how they connect: paste Mermaid into a
    Markdown file, or pipe DOT into `dot -Tsvg`."""
    from broker.contracts.check import check_configured, target_kinds  # noqa: PLC0415
    from broker.contracts.graph import build, dot, mermaid  # noqa: PLC0415

    settings = settings_of(ctx)
    contract_set, errors = check_configured(settings, folder)
    if errors:
        raise click.ClickException("contracts rejected:\n" + "\n".join(map(str, errors)))
    drawn = build(contract_set.by_name().values(), target_kinds(settings))
    click.echo(mermaid(drawn) if fmt == "mermaid" else dot(drawn))


def _meta(values: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--meta")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


@main.command()
@click.argument("dataset")
@click.option("--partition", "-p")
@click.option("--status", type=click.Choice(["success", "failed"]), default="success")
@click.option("--meta", "-m", multiple=True, help="KEY=VALUE (VALUE parsed as JSON if it can be)")
@click.option("--event-id")
@click.option("--producer", default="cli")
@click.option("--url", help="Baton's API (default: from the config)")
@click.option("--redis-url", help="publish straight to Redis instead of over HTTP")
@click.option("--token", envvar="BATON_TOKEN", help="producer token (env BATON_TOKEN)")
@click.option("--json", "as_json", is_flag=True)
@click.option("--strict", is_flag=True, help="exit 1 when the event feeds no contract, or "
              "cannot feed one that reads its dataset (Baton keeps it all the same)")  # fmt: skip
@click.pass_context
def publish(ctx: click.Context, dataset: str, partition: str | None, status: str,
            meta: tuple[str, ...], event_id: str | None, producer: str, url: str | None,
            redis_url: str | None, token: str | None, as_json: bool,
            strict: bool) -> None:  # fmt: skip
    """Publish one dataset-completion event, and say which contracts it feeds."""
    from broker.client import BatonClient, Unrouted  # noqa: PLC0415

    settings = settings_of(ctx)
    if strict and redis_url:
        raise click.UsageError("--strict needs Baton's API, which knows the contracts, "
                               "not --redis-url")  # fmt: skip
    target = {"redis_url": redis_url} if redis_url else {"url": url or api_url(settings)}
    unrouted = None
    with BatonClient(**target, token=token, namespace=settings.namespace, strict=strict) as client:
        try:
            result = client.publish(dataset, partition, status=status, metadata=_meta(meta),
                                    event_id=event_id, producer=producer)  # fmt: skip
        except Unrouted as exc:  # accepted all the same: say where it went, then fail
            result, unrouted = exc.result, exc
        except BatonError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(result.as_dict()) if as_json else "\n".join(result.lines()))
    if unrouted is not None:
        click.echo(f"--strict: {unrouted}", err=True)
        ctx.exit(1)


@main.command()
@click.argument("contract")
@click.argument("partition", required=False)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def explain(ctx: click.Context, contract: str, partition: str | None, as_json: bool) -> None:
    """What is satisfied, what is missing and since when, and the trigger."""
    from broker.cli.inspect import explain_command  # noqa: PLC0415

    click.echo(run_async(lambda: explain_command(settings_of(ctx), contract, partition, as_json)))


@main.command()
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def triggers(ctx: click.Context, limit: int, as_json: bool) -> None:
    """Recent triggers: state, attempts, last error, downstream run."""
    from broker.cli.inspect import triggers_command  # noqa: PLC0415

    click.echo(run_async(lambda: triggers_command(settings_of(ctx), limit, as_json)))


@main.command()
@click.argument("contract")
@click.argument("backfill_id", required=False)
@click.option("--from", "start", help="first partition")
@click.option("--to", "end", help="last partition (included)")
@click.option("--order", type=click.Choice(["newest-first", "oldest-first"]),
              default="newest-first", show_default=True)  # fmt: skip
@click.option("--max-in-flight", default=4, show_default=True,
              help="downstream runs of this backfill not yet finished, at most")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="print the plan and each partition's readiness")
@click.option("--force", is_flag=True,
              help="also fire incomplete partitions, and rerun ones that ran")  # fmt: skip
@click.option("--detach", is_flag=True, help="start it and return (no progress bar)")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def backfill(ctx: click.Context, contract: str, backfill_id: str | None, start: str | None,
             end: str | None, order: str, max_in_flight: int, dry_run: bool, force: bool,
             detach: bool, as_json: bool) -> None:  # fmt: skip
    """Redo CONTRACT's partitions --from P --to P; `baton backfill status [ID]` shows them.

    The workers carry a backfill out, so it survives this command and any restart."""
    from broker.cli.backfill import run_backfill, show_status  # noqa: PLC0415

    settings = settings_of(ctx)
    if contract == "status":
        click.echo(run_async(lambda: show_status(settings, backfill_id, as_json)))
        return
    if backfill_id is not None:
        raise click.UsageError(f"unexpected argument {backfill_id!r}")
    if not start or not end:
        raise click.UsageError("give --from and --to")
    run_async(lambda: run_backfill(settings, contract, start, end, order=order,
                              max_in_flight=max_in_flight, force=force, dry_run=dry_run,
                              detach=detach, as_json=as_json))  # fmt: skip


@main.command()
@click.option("--from", "start", required=True, help="events that landed from this time")
@click.option("--to", "end", required=True, help="... up to this time (ISO-8601; UTC if bare)")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def replay(ctx: click.Context, start: str, end: str, as_json: bool) -> None:
    """Rebuild match state from the events kept in the stream; nothing fires (start
    what it completes with `baton backfill`)."""
    from broker.matching.loaded import load_checked  # noqa: PLC0415
    from broker.runtime import Runtime  # noqa: PLC0415
    from broker.time.replay import parse_time  # noqa: PLC0415
    from broker.time.replay import replay as run_replay  # noqa: PLC0415

    try:
        first, last = parse_time(start), parse_time(end)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    if first > last:
        raise click.BadParameter(f"--from {start} comes after --to {end}")
    settings = settings_of(ctx)
    contracts = load_checked(settings)

    async def go() -> str:
        runtime = await Runtime.open(settings)
        try:
            report = await run_replay(runtime.store, contracts, first, last)
        finally:
            await runtime.close()
        return json.dumps(report.as_dict(), indent=2) if as_json else report.text()

    click.echo(run_async(go))


@main.group()
def token() -> None:
    """Producer tokens."""


@token.command("hash")
@click.argument("value", required=False)
def token_hash_command(value: str | None) -> None:
    """Print a token's SHA-256, for `token_sha256:` in the config (reads stdin without
    VALUE, so the token stays out of shell history)."""
    from broker.ingest.auth import token_hash  # noqa: PLC0415

    secret = value if value is not None else sys.stdin.readline().strip()
    if not secret:
        raise click.UsageError("no token given")
    click.echo(token_hash(secret))


@main.command()
@click.argument("action", type=click.Choice(["list", "flush"]))
@click.option("--dir", "spool_dir", envvar="BATON_SPOOL_DIR", help="default ~/.baton/spool")
@click.option("--url", help="Baton's API (default: from the config)")
@click.option("--token", envvar="BATON_TOKEN", help="producer token (env BATON_TOKEN)")
@click.pass_context
def spool(ctx: click.Context, action: str, spool_dir: str | None, url: str | None,
          token: str | None) -> None:  # fmt: skip
    """Events the task-side helpers kept while Baton was down: list them, or send them."""
    from adapters.publish import spool_command  # noqa: PLC0415

    code, text = spool_command(
        action, spool_dir=spool_dir, url=url or api_url(settings_of(ctx)), token=token
    )
    click.echo(text)
    ctx.exit(code)


@main.group()
def dlq() -> None:
    """Dead letters: triggers that failed for good."""


@dlq.command("list")
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def dlq_list(ctx: click.Context, limit: int, as_json: bool) -> None:
    """Dead letters, newest first, with the error that ended each."""
    from broker.cli.inspect import dlq_list_command  # noqa: PLC0415

    click.echo(run_async(lambda: dlq_list_command(settings_of(ctx), limit, as_json)))


@dlq.command("retry")
@click.argument("trigger_ids", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="every dead letter")
@click.pass_context
def dlq_retry(ctx: click.Context, trigger_ids: tuple[str, ...], everything: bool) -> None:
    """Dispatch dead-lettered triggers again (same trigger ids: still exactly once)."""
    from broker.cli.inspect import dlq_retry_command  # noqa: PLC0415

    if bool(trigger_ids) == everything:
        raise click.UsageError("give trigger ids or --all (not both)")
    wanted = None if everything else list(trigger_ids)
    text, ok = run_async(lambda: dlq_retry_command(settings_of(ctx), wanted))
    click.echo(text)
    if not ok:
        ctx.exit(1)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True)
@click.option("--secret", envvar="BATON_SINK_SECRET", help="verify X-Baton-Signature")
@click.option("--delay", default=0.0, help="seconds to wait before answering")
def sink(host: str, port: int, secret: str | None, delay: float) -> None:
    """A local webhook receiver to try Baton with; lists deliveries at GET /."""
    import uvicorn  # noqa: PLC0415

    from broker.cli.sink import create_sink  # noqa: PLC0415

    uvicorn.run(create_sink(secret, delay=delay), host=host, port=port, log_level="warning")


# The operator commands that go through the API (pause, resume, audit).
for _command in CONTROL_COMMANDS:
    main.add_command(_command)
