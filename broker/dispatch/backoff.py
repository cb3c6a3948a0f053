"""Exponential backoff with jitter, as data (initial, factor, jitter, max_delay)."""

from __future__ import annotations

import random
from datetime import timedelta

from broker.core.settings import RetrySettings


def delay(policy: RetrySettings, attempt: int, rng: random.Random) -> timedelta:
    """The wait before attempt `attempt + 1`, after `attempt` (>= 1) failed attempts."""
    base = policy.initial.total_seconds() * policy.factor ** (attempt - 1)
    capped = min(base, policy.max_delay.total_seconds())
    spread = capped * policy.jitter
    return timedelta(seconds=max(0.0, capped + rng.uniform(-spread, spread)))
