"""What a new contract set changes: per contract, added, removed, or which aspects of it.

A contract is its `name`: a renamed contract is a new one, and the old name is removed.
A definition is compared aspect by aspect (condition, partitioning, deadline, trigger,
about), each as a short digest of its fields. The applied definitions are kept in Redis
(`<ns>:contracts:defs`, name -> digest of each aspect), so any worker can tell what
changed since the last set was applied.

What each change does to the state that is live: broker/control/apply.py; what it would
do, shown by `baton diff` without changing anything: broker/control/preview.py.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from broker.contracts.model import Contract
from broker.core.secrets import redact

# Which fields make up each aspect of a contract; a change is reported per aspect.
ASPECTS: dict[str, tuple[str, ...]] = {
    "condition": ("when", "within", "on_restatement"),
    "partitioning": ("partitioned", "timezone", "partitions"),
    "deadline": ("deadline", "on_deadline"),
    "trigger": ("trigger", "produces", "retry"),
    "about": ("owner", "description"),
}
# Aspects whose change makes waiting partitions be evaluated again.
REEVALUATE = frozenset({"condition", "partitioning"})


def digests(contract: Contract) -> dict[str, str]:
    """A short digest of each aspect of `contract`'s definition."""
    data = contract.as_data()
    out = {}
    for aspect, names in ASPECTS.items():
        blob = json.dumps([data.get(n) for n in names], sort_keys=True, separators=(",", ":"))
        out[aspect] = hashlib.sha1(blob.encode()).hexdigest()[:12]
    return out


@dataclass(slots=True)
class Effect:
    kind: str  # would_fire | still_waiting | no_inputs | resumes | stops | alert_now | ...
    message: str
    count: int = 0
    partitions: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ContractChange:
    name: str
    change: str  # added | removed | changed
    aspects: list[str] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)  # `deadline: +2h -> +1h`, `when`
    effects: list[Effect] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(old: Mapping[str, Contract], new: Mapping[str, Contract]) -> list[ContractChange]:
    """Per contract name: added, removed, or which aspects and fields changed."""
    out = []
    for name in sorted(old.keys() | new.keys()):
        before, after = old.get(name), new.get(name)
        if before is None:
            out.append(ContractChange(name, "added"))
        elif after is None:
            out.append(ContractChange(name, "removed"))
        else:
            a, b = digests(before), digests(after)
            aspects = [k for k in ASPECTS if a[k] != b[k]]
            if aspects:
                fields = _field_changes(before, after, aspects)
                out.append(ContractChange(name, "changed", aspects, fields))
    return out


def _field_changes(before: Contract, after: Contract, aspects: Iterable[str]) -> list[str]:
    a, b = before.as_data(), after.as_data()
    # Shown as written: defaults left out (`{"dataset": "x"}`, not every field of Input),
    # and a credential written out masked (a PR comment is no place for it).
    shown_a, shown_b = (redact(c.as_data(exclude_defaults=True))
                        for c in (before, after))  # fmt: skip
    out = []
    for aspect in aspects:
        for name in ASPECTS[aspect]:
            if a.get(name) == b.get(name):
                continue
            old, new = _short(shown_a.get(name)), _short(shown_b.get(name))
            out.append(f"{name}: {old} -> {new}" if old and new else f"{name}: changed")
    return out


def _short(value: Any) -> str:
    shown = json.dumps(value, separators=(",", ":")) if value is not None else "none"
    return shown if len(shown) <= 60 else ""


def since_applied(
    applied: Mapping[str, Mapping[str, str]], fresh: Mapping[str, Mapping[str, str]]
) -> list[ContractChange]:
    """The changes from the applied definitions to `fresh` ones (both as digests)."""
    changes: list[ContractChange] = []
    for name in sorted(applied.keys() | fresh.keys()):
        if name not in fresh:
            changes.append(ContractChange(name, "removed"))
        elif name not in applied:
            changes.append(ContractChange(name, "added"))
        else:
            aspects = [a for a in ASPECTS if applied[name].get(a) != fresh[name][a]]
            if aspects:
                changes.append(ContractChange(name, "changed", aspects))
    return changes


def render(changes: list[ContractChange], old_version: str, new_version: str, live: str) -> str:
    """The text of `baton diff`, fit for a terminal and for a PR comment."""
    lines = [f"contracts {old_version} -> {new_version} ({live})"]
    if not changes:
        lines.append("no contract changes")
    mark = {"added": "+", "removed": "-", "changed": "~"}
    for change in changes:
        about = f" ({', '.join(change.aspects)})" if change.aspects else ""
        lines.append(f"{mark[change.change]} {change.name}: {change.change}{about}")
        lines += [f"    {f}" for f in change.fields]
        lines += [f"    => {e.message}" for e in change.effects]
    return "\n".join(lines)
