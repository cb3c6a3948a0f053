"""A contract's condition, made concrete for one partition as a tree over slots.

A *slot* is one thing that must arrive: (dataset, input partition, filter). The tree
is what the state script evaluates atomically in Redis:
`{"s": slot}` | `{"all": [tree, ...]}` | `{"any": [tree, ...]}`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from broker.contracts.model import (
    AllOf,
    AnyOf,
    Condition,
    Contract,
    Input,
    contract_calendar,
    input_calendar,
)
from broker.core.partitions import Granularity, required_input_keys

Tree = dict[str, Any]

# Separates a slot's parts; a control character, so it can never occur in a dataset
# name or a partition key (both are printable).
SLOT_SEP = "\x1f"


def slot(dataset: str, partition: str, where: str | None) -> str:
    """The slot name; the filter is hashed so two filters on one dataset stay apart."""
    tag = hashlib.sha1(where.encode()).hexdigest()[:8] if where else ""
    return SLOT_SEP.join((dataset, partition, tag))


def split_slot(name: str) -> tuple[str, str]:
    """(dataset, partition) of a slot name."""
    dataset, partition, _ = name.split(SLOT_SEP)
    return dataset, partition


def readable_slot(name: str) -> str:
    """`dataset[partition]` (or the dataset alone), as people read a slot."""
    dataset, partition = split_slot(name)
    return f"{dataset}[{partition}]" if partition else dataset


def input_keys(contract: Contract, partition: str, item: Input) -> list[str]:
    """The input partitions `item` needs for contract partition `partition`."""
    if contract.partitioned == Granularity.NONE:
        return [""]
    return required_input_keys(
        contract_calendar(contract), partition, input_calendar(contract, item), item.offset
    )


def build_tree(contract: Contract, partition: str) -> Tree:
    """The condition of `contract` for `partition`, over slots."""
    return _node(contract, partition, contract.when)


def _node(contract: Contract, partition: str, cond: Condition) -> Tree:
    if isinstance(cond, AllOf):
        return {"all": [_node(contract, partition, c) for c in cond.all_of]}
    if isinstance(cond, AnyOf):
        return {"any": [_node(contract, partition, c) for c in cond.any_of]}
    item = cond if isinstance(cond, Input) else Input(dataset=cond)
    keys = input_keys(contract, partition, item)
    leaves: list[Tree] = [{"s": slot(item.dataset, k, item.where)} for k in keys]
    return leaves[0] if len(leaves) == 1 else {"all": leaves}


def tree_json(tree: Tree) -> str:
    return json.dumps(tree, separators=(",", ":"))


# Stands for the partition in a contract's tree shape: a control character no dataset
# name, filter tag or partition key holds, as JSON writes it.
_HOLE = "\x00"
_HOLE_JSON = json.dumps(_HOLE)[1:-1]


def tree_shape(contract: Contract) -> str | None:
    """`tree_json(build_tree(contract, p))` for every partition p, with a hole where p
    goes (`fill`), when each of its inputs reads the partition itself (its
    granularity, no offset) or the one partition of an unpartitioned dataset; None for
    a contract whose inputs map partitions otherwise (build its tree each time)."""
    shape = _shaped(contract, contract.when)
    return None if shape is None else tree_json(shape)


def fill(shape: str, partition: str) -> str:
    """The tree of a `tree_shape` for `partition`."""
    return shape.replace(_HOLE_JSON, json.dumps(partition)[1:-1])


def _shaped(contract: Contract, cond: Condition) -> Tree | None:
    if isinstance(cond, AllOf | AnyOf):
        kind, children = ("all", cond.all_of) if isinstance(cond, AllOf) else ("any", cond.any_of)
        shaped = [_shaped(contract, c) for c in children]
        return None if any(s is None for s in shaped) else {kind: shaped}
    grain = cond.partitioned or contract.partitioned
    if Granularity.NONE in (contract.partitioned, grain):
        key = ""  # input_keys: the one partition, ""
    elif grain == contract.partitioned and cond.offset == 0:
        key = _HOLE  # required_input_keys, "same": the contract's partition itself
    else:
        return None
    return {"s": slot(cond.dataset, key, cond.where)}


def leaves(tree: Tree) -> Iterator[str]:
    """Every slot of a tree, in order, once each."""
    seen: set[str] = set()
    stack = [tree]
    order: list[str] = []
    while stack:
        node = stack.pop()
        if "s" in node:
            if node["s"] not in seen:
                seen.add(node["s"])
                order.append(node["s"])
            continue
        stack.extend(reversed(node.get("all") or node.get("any") or []))
    yield from order


def holds(tree: Tree, present: set[str]) -> bool:
    """Pure twin of the Lua evaluation, for explain and for tests."""
    if "s" in tree:
        return tree["s"] in present
    if "all" in tree:
        return all(holds(c, present) for c in tree["all"])
    return any(holds(c, present) for c in tree["any"])


@dataclass(frozen=True, slots=True)
class DatasetUse:
    """How one contract input uses a dataset."""

    contract: Contract
    input: Input


def as_input(cond: Condition) -> Input | None:
    if isinstance(cond, Input):
        return cond
    if isinstance(cond, str):
        return Input(dataset=cond)
    return None
