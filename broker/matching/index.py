"""Index from dataset name to the contract inputs that read it.

Matching an event costs one dict lookup plus work per *subscriber* of its dataset,
never a scan over all contracts.
"""

from __future__ import annotations

from collections import defaultdict
from typing import NamedTuple

from broker.contracts.model import Contract, Input, contract_calendar, input_calendar, iter_inputs
from broker.core.expressions import Expression, compile_expression
from broker.core.partitions import Calendar


class Subscription(NamedTuple):
    """One contract input reading one dataset, with everything matching needs
    precomputed (a tuple: 300,000 of them are made at a start over 100,000 contracts)."""

    contract: Contract
    input: Input
    contract_calendar: Calendar
    input_calendar: Calendar
    where: Expression | None


class DatasetIndex:
    """dataset -> subscriptions; built once per loaded contract set. Built from the
    index of the set before, only the datasets that a changed, added or removed
    contract reads are indexed again: a contract is unchanged when it is the very
    object the set before held (the file cache keeps it so), and an unchanged
    contract's subscriptions are what they were."""

    def __init__(
        self, contracts: dict[str, Contract], previous: DatasetIndex | None = None,
        changed: list[Contract] | None = None,
    ) -> None:  # fmt: skip
        """`contracts` by name, as the matcher keeps them; `changed`, when the caller
        knows them, the ones that are not the previous set's objects."""
        self._contracts = contracts
        self._names: list[str] | None = None  # with `_order`: each name's place
        self._order: dict[str, int] | None = None
        before = previous._contracts if previous is not None else {}
        if changed is None:
            changed = (
                [c for c in contracts.values() if before.get(c.name) is not c] if before else []
            )
        if previous is None or not before or 2 * len(changed) > len(contracts):
            by_dataset: dict[str, list[Subscription]] = defaultdict(list)
            for contract in contracts.values():
                for sub in _subscriptions(contract):
                    by_dataset[sub.input.dataset].append(sub)
            self._by_dataset = dict(by_dataset)
        else:
            self._by_dataset = self._updated(changed, previous)

    def _places(self, previous: DatasetIndex) -> dict[str, int]:
        """Each contract's place in the set: the previous index's, when every name is
        where it was (an edit in place; comparing the names is a pass of C, not Python)."""
        names = list(self._contracts)
        if previous._order is not None and previous._names == names:
            order = previous._order
        else:
            order = {name: i for i, name in enumerate(names)}
        self._names, self._order = names, order
        return order

    def subscribers(self, dataset: str) -> list[Subscription]:
        return self._by_dataset.get(dataset, [])

    def datasets(self) -> set[str]:
        return set(self._by_dataset)

    def _updated(
        self, changed: list[Contract], previous: DatasetIndex
    ) -> dict[str, list[Subscription]]:
        """The previous index's lists, and those of the datasets that the `changed`
        contracts (in their old and new forms) and the removed ones read built again."""
        before = previous._contracts
        gone = (before.keys() - self._contracts.keys()) | {c.name for c in changed}
        added: dict[str, list[Subscription]] = defaultdict(list)
        for contract in changed:
            for sub in _subscriptions(contract):
                added[sub.input.dataset].append(sub)
        touched = set(added) | {item.dataset for name in gone if name in before
                                for item in iter_inputs(before[name].when)}  # fmt: skip
        by_dataset = dict(previous._by_dataset)
        order = self._places(previous) if touched else {}
        for dataset in touched:
            kept = [s for s in by_dataset.get(dataset, ()) if s.contract.name not in gone]
            subs = sorted(kept + added.get(dataset, []), key=lambda s: order[s.contract.name])
            if subs:
                by_dataset[dataset] = subs
            else:
                by_dataset.pop(dataset, None)
        return by_dataset


def _subscriptions(contract: Contract) -> list[Subscription]:
    """One subscription per distinct reading: a dataset read daily and hourly (or at two
    offsets, or under two filters) feeds each input."""
    seen: set[tuple[str, str, int, str | None]] = set()
    out = []
    for item in iter_inputs(contract.when):
        key = (item.dataset, item.granularity(contract), item.offset, item.where)
        if key not in seen:
            seen.add(key)
            out.append(_subscription(contract, item))
    return out


def _subscription(contract: Contract, item: Input) -> Subscription:
    own = contract_calendar(contract)
    return Subscription(
        contract=contract,
        input=item,
        contract_calendar=own,
        input_calendar=own if item.partitioned is None else input_calendar(contract, item),
        where=compile_expression(item.where) if item.where else None,
    )
