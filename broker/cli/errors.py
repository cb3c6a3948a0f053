"""How the command line answers a mistake or a failure: one line, never a traceback.

    BatonError (a bad contract, config, event ...)  -> its message
    ValueError (a partition key of the wrong shape)  -> its message
    Redis unreachable                                -> "cannot reach Redis at ...", what to check
    an HTTP call that could not be made              -> "cannot reach ...: ..."
    anything else                                    -> "internal error: ..." (the traceback
                                                        with -v, for a bug report)
Click's own usage errors and exits pass through untouched.
"""

from __future__ import annotations

import logging
from typing import Any

import click
import httpx

from broker.core.errors import BatonError
from broker.state.health import is_down

log = logging.getLogger("baton")


class BatonGroup(click.Group):
    """The `baton` group: each subcommand's failure is turned into one clear line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:  # the one place every command's failure ends
            raise click.ClickException(describe(exc, ctx)) from exc


def describe(exc: BaseException, ctx: click.Context) -> str:
    if isinstance(exc, BatonError | ValueError):
        return str(exc)
    if is_down(exc):
        return (f"cannot reach Redis: {exc} (is it running, and is redis_url right in the "
                "config?)")  # fmt: skip
    if isinstance(exc, httpx.HTTPError):
        return f"cannot reach Baton's API: {exc}"
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {exc}"
    verbose = bool(ctx.params.get("verbose"))
    if verbose:
        log.exception("internal error")
    hint = "" if verbose else " (run with -v for the traceback)"
    return f"internal error: {type(exc).__name__}: {exc}{hint}"
