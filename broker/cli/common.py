"""What every `baton` command shares: its settings, its event loop, the API's address."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from broker.core.errors import BatonError, ConfigError
from broker.core.settings import Settings, load_settings

T = TypeVar("T")


def settings_of(ctx: click.Context) -> Settings:
    """The settings, loaded on first use (so `baton schema` needs no configuration)."""
    if not isinstance(ctx.obj, Settings):
        try:
            ctx.obj = load_settings(ctx.obj)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from exc
    settings: Settings = ctx.obj
    return settings


def run_async(coro: Callable[[], Awaitable[T]]) -> T:
    """Run on uvloop where it is installed: Baton's hot paths are all in the event loop."""
    try:
        import uvloop  # noqa: PLC0415

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        factory = None
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(coro())  # type: ignore[arg-type]
    except BatonError as exc:
        raise click.ClickException(str(exc)) from exc


def api_url(settings: Settings) -> str:
    host = settings.api.host if settings.api.host not in ("0.0.0.0", "::") else "127.0.0.1"
    return f"http://{host}:{settings.api.port}"
