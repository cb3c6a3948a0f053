"""Dead letters: list them, and bring them back (`baton dlq`, `/v1/dlq`).

A dead letter is a trigger that failed for good (a permanent error, or every retry
spent). Retrying it puts the same trigger id back on the triggers stream with a fresh
attempt budget, so a target that did start a run deduplicates it: still exactly once.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from broker.state.redis_store import RedisStore


async def list_dead(store: RedisStore, limit: int = 100) -> list[dict[str, Any]]:
    """Dead letters whose trigger is still failed (a retried one drops out), newest first."""
    out = []
    for letter in await store.dead_letters(limit):
        record = await store.get_trigger(letter.trigger_id)
        item = asdict(letter)
        if record is not None:
            item |= {"contract": record.contract, "partition": record.partition,
                     "attempts": record.attempts, "state": record.state}  # fmt: skip
        else:  # past the history window, with the dead letter soon after it
            item["state"] = "expired"
        out.append(item)
    return out


async def retry(store: RedisStore, trigger_ids: list[str] | None) -> dict[str, list[str]]:
    """Revive the given triggers, or every dead one (None); says which were not dead."""
    entries: dict[str, list[str]] = {}
    for letter in await store.dead_letters(10_000):  # read once, not once per trigger
        entries.setdefault(letter.trigger_id, []).append(letter.entry_id)
    if trigger_ids is None:
        trigger_ids = list(entries)
    result: dict[str, list[str]] = {"retried": [], "not_dead": []}
    for trigger_id in trigger_ids:
        revived = await store.revive(trigger_id, entries.get(trigger_id, []))
        result["retried" if revived else "not_dead"].append(trigger_id)
    return result
