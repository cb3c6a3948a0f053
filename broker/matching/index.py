"""Index from dataset name to the contract inputs that read it.

Matching an event costs one dict lookup plus work per *subscriber* of its dataset,
never a scan over all contracts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from broker.contracts.model import Contract, Input, contract_calendar, input_calendar, iter_inputs
from broker.core.expressions import Expression, compile_expression
from broker.core.partitions import Calendar


@dataclass(frozen=True, slots=True)
class Subscription:
    """One contract input reading one dataset, with everything matching needs precomputed."""

    contract: Contract
    input: Input
    contract_calendar: Calendar
    input_calendar: Calendar
    where: Expression | None


class DatasetIndex:
    """dataset -> subscriptions; built once per loaded contract set."""

    def __init__(self, contracts: Iterable[Contract]) -> None:
        by_dataset: dict[str, list[Subscription]] = defaultdict(list)
        for contract in contracts:
            seen: set[tuple[str, str, int, str | None]] = set()
            for item in iter_inputs(contract.when):
                # one subscription per distinct reading: a dataset read daily and hourly
                # (or at two offsets, or under two filters) feeds each input
                key = (item.dataset, item.granularity(contract), item.offset, item.where)
                if key in seen:
                    continue
                seen.add(key)
                by_dataset[item.dataset].append(_subscription(contract, item))
        self._by_dataset = dict(by_dataset)

    def subscribers(self, dataset: str) -> list[Subscription]:
        return self._by_dataset.get(dataset, [])

    def datasets(self) -> set[str]:
        return set(self._by_dataset)


def _subscription(contract: Contract, item: Input) -> Subscription:
    return Subscription(
        contract=contract,
        input=item,
        contract_calendar=contract_calendar(contract),
        input_calendar=input_calendar(contract, item),
        where=compile_expression(item.where) if item.where else None,
    )
