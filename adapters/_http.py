"""The boundary where HTTP failures become Baton's errors, for both HTTP clients.

    timeouts, connection errors        -> TargetUnavailable (transient)
    408, 425, 429, 5xx                 -> TargetUnavailable (transient)
    any other 4xx                      -> TargetRejected (permanent)

httpx serves the orchestrator adapters, aiohttp the alert sinks, and `adapters.http1`
the webhooks, the hot path (its errors are OSErrors and TimeoutError): per request
~900 us of CPU for httpx, ~220 us for aiohttp, ~125 us for http1, measured here.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from broker.core.errors import TargetRejected, TargetUnavailable

_TRANSIENT = {408, 425, 429}


@contextmanager
def translate_errors(target: str) -> Iterator[None]:
    """Turn transport exceptions raised inside the block into TargetUnavailable."""
    try:
        yield
    except (TimeoutError, httpx.TimeoutException) as exc:
        raise TargetUnavailable(f"{target}: timed out ({type(exc).__name__})") from exc
    except _transport_errors() as exc:
        raise TargetUnavailable(f"{target}: {type(exc).__name__}: {exc}") from exc


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The clients' transport errors: aiohttp's only once it is imported (by the alert
    sinks: ~170 ms of every process's start otherwise), before which none is raised."""
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is None:
        return (httpx.TransportError, OSError)
    return (httpx.TransportError, aiohttp.ClientError, OSError)


def classify(target: str, status: int, text: str) -> None:
    """Raise for a non-2xx answer, quoting the target's own words."""
    if 200 <= status < 300:
        return
    detail = f"{target}: HTTP {status}: {text[:500]}"
    if status in _TRANSIENT or status >= 500:
        raise TargetUnavailable(detail)
    raise TargetRejected(detail)


def raise_for_status(target: str, response: httpx.Response) -> None:
    classify(target, response.status_code, response.text)
