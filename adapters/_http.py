"""The one boundary where HTTP failures become Baton's errors.

httpx.TimeoutException, httpx.TransportError  -> TargetUnavailable (transient)
408, 425, 429, 5xx                             -> TargetUnavailable (transient)
any other 4xx                                  -> TargetRejected (permanent)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from broker.errors import TargetRejected, TargetUnavailable

_TRANSIENT = {408, 425, 429}


@contextmanager
def translate_errors(target: str) -> Iterator[None]:
    """Turn httpx exceptions raised inside the block into TargetUnavailable."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise TargetUnavailable(f"{target}: timed out ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise TargetUnavailable(f"{target}: {type(exc).__name__}: {exc}") from exc


def raise_for_status(target: str, response: httpx.Response) -> None:
    """Classify a non-2xx answer, quoting the target's own words."""
    if response.is_success:
        return
    detail = f"{target}: HTTP {response.status_code}: {response.text[:500]}"
    if response.status_code in _TRANSIENT or response.status_code >= 500:
        raise TargetUnavailable(detail)
    raise TargetRejected(detail)
