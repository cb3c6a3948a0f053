"""What a change to the contracts would do to the live state, before it is applied.

`baton diff` previews the rules of broker/control/apply.py over the same state in Redis
without changing anything: per changed contract, which waiting partitions would fire at
once or still wait, which stop, resume, or move on the deadline clock. Each such effect
names the first few partitions it touches and counts the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from broker.contracts.model import Contract
from broker.control.changes import REEVALUATE, ContractChange, Effect, compare
from broker.control.live import Held, LiveState, deadline_ms, replan, would_fire
from broker.matching.matcher import Matcher
from broker.time.deadlines import watched

SHOWN = 5  # partitions named in a message; the rest are counted


async def preview(
    state: LiveState,
    old: Mapping[str, Contract],
    new: Mapping[str, Contract],
    retention: timedelta,
    now: datetime | None = None,
) -> list[ContractChange]:
    """`compare`, with what each change would do to the live state in Redis."""
    now = now or datetime.now(UTC)
    changes = compare(old, new)
    removed = await state.removed()
    held = await state.held(c.name for c in changes)
    matcher = Matcher(new.values())
    for change in changes:
        name, mine = change.name, held[change.name]
        if change.change == "added":
            change.effects.append(_added(name, mine, removed.get(name)))
        elif change.change == "removed":
            change.effects.append(_removed(old[name], mine, retention, now))
        else:
            if REEVALUATE & set(change.aspects):
                change.effects += _reevaluated(new[name], matcher, mine)
            if {"deadline", "partitioning"} & set(change.aspects):
                change.effects += await _deadline_moves(state, old[name], new[name], mine, now)
            if "trigger" in change.aspects:
                change.effects.append(Effect("trigger", "the next firings use the new trigger; "
                                             "triggers already made keep theirs"))  # fmt: skip
    return changes


def _effect(kind: str, message: str, partitions: list[str] | None = None) -> Effect:
    """An effect on the partitions named; `{n}` in `message` becomes their count and
    `{which}` their list (the first few), `{s}` a plural s."""
    items = partitions or []
    shown = [p or "(unpartitioned)" for p in items]
    text = message.format(n=len(items), which=_list(shown), s="" if len(items) == 1 else "s")
    return Effect(kind, text, len(items), items)


def _added(name: str, held: list[Held], removed: Mapping[str, str] | None) -> Effect:
    if held and removed is not None:
        when = removed["removed_at"][:19]
        return _effect("resumes", f"comes back: resumes {{n}} kept partition{{s}} (removed {when})",
                       [h.partition for h in held])  # fmt: skip
    if held:
        return _effect("resumes", "has {n} partition{s} of state already",
                       [h.partition for h in held])  # fmt: skip
    return _effect("no_inputs", "a new contract with no inputs yet")


def _removed(contract: Contract, held: list[Held], retention: timedelta, now: datetime) -> Effect:
    partitioned = contract.partitioned != "none"
    waiting = [h.partition for h in held if h.waiting(partitioned)]
    until = (now + retention).date().isoformat()
    if not waiting:
        return _effect("stops", f"stops; no partition is waiting (state kept until {until})")
    return _effect("stops", "stops: {n} waiting partition{s} would never fire ({which}); "
                   f"state kept until {until}", waiting)  # fmt: skip


def _reevaluated(contract: Contract, matcher: Matcher, held: list[Held]) -> list[Effect]:
    partitioned = contract.partitioned != "none"
    waiting = [h for h in held if h.waiting(partitioned)]
    if not waiting:
        return [_effect("still_waiting", "no partition is waiting: nothing to evaluate again")]
    ops = replan(contract, matcher, waiting)
    fire, wait = would_fire(contract, ops, {h.partition: h for h in held})
    out = []
    if fire:
        message = f"{{n}} waiting partition{{s}} of {contract.name} would fire at once: {{which}}"
        out.append(_effect("would_fire", message, fire))
    if wait:
        out.append(_effect("still_waiting", "{n} partition{s} would still wait: {which}", wait))
    return out


async def _deadline_moves(
    state: LiveState, old: Contract, new: Contract, held: list[Held], now: datetime
) -> list[Effect]:
    fired = {h.partition for h in held if h.fired >= 0}
    now_ms = int(now.timestamp() * 1000)
    moves: dict[str, list[str]] = {"alert_now": [], "deadline_earlier": [],
                                   "deadline_later": [], "off_clock": []}  # fmt: skip
    for partition, score in sorted((await state.clock(new.name)).items()):
        ms = deadline_ms(new, partition)
        if ms is None:
            moves["off_clock"].append(partition)
        elif ms < score and ms <= now_ms and partition not in fired:
            moves["alert_now"].append(partition)
        elif ms != score:
            moves["deadline_earlier" if ms < score else "deadline_later"].append(partition)
    messages = {
        "alert_now": "deadline moves earlier: {n} partition{s} would alert now ({which})",
        "deadline_earlier": "deadline moves earlier for {n} watched partition{s} ({which})",
        "deadline_later": "deadline moves later for {n} watched partition{s} ({which})",
        "off_clock": "{n} watched partition{s} leave the deadline clock ({which})",
    }
    out = [_effect(kind, messages[kind], items) for kind, items in moves.items() if items]
    if not watched(old) and watched(new):
        out.append(_effect("deadline_new", "a new deadline: partitions are watched from now on"))
    return out


def _list(partitions: list[str]) -> str:
    shown = ", ".join(partitions[:SHOWN])
    more = len(partitions) - SHOWN
    return f"{shown} and {more} more" if more > 0 else shown
