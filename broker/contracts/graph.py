"""`baton graph`: datasets, contracts and targets, and how they connect, as Mermaid or DOT.

    dataset --input--> contract --trigger--> target
                       contract --produces--> dataset

An edge from a dataset says how the contract reads it when that is not plain: another
granularity, an offset, a filter, or one branch of an `any_of`. Everything comes from the
contract files and the config; nothing is read from Redis.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from broker.contracts.model import AllOf, AnyOf, Condition, Contract, Input


@dataclass(frozen=True, slots=True)
class Edge:
    source: str  # node ids: d:<dataset>, c:<contract>, t:<target>
    target: str
    label: str = ""


@dataclass(frozen=True, slots=True)
class Graph:
    nodes: dict[str, str]  # id -> kind (dataset | contract | target)
    edges: list[Edge]


def build(contracts: Iterable[Contract], targets: Mapping[str, str]) -> Graph:
    """The graph of `contracts`; `targets` maps target names to their kind."""
    nodes: dict[str, str] = {}
    edges: list[Edge] = []
    for contract in sorted(contracts, key=lambda c: c.name):
        me = f"c:{contract.name}"
        nodes[me] = "contract"
        for item, any_of in _inputs(contract.when, any_of=False):
            nodes[f"d:{item.dataset}"] = "dataset"
            edges.append(Edge(f"d:{item.dataset}", me, _label(contract, item, any_of)))
        target = f"t:{contract.trigger.target}"
        nodes[target] = "target"
        edges.append(Edge(me, target, _trigger_label(contract, targets)))
        for dataset in contract.produces:
            nodes[f"d:{dataset}"] = "dataset"
            edges.append(Edge(me, f"d:{dataset}", "produces"))
    return Graph(nodes, edges)


def _inputs(cond: Condition, any_of: bool) -> Iterator[tuple[Input, bool]]:
    if isinstance(cond, AllOf):
        for c in cond.all_of:
            yield from _inputs(c, any_of)
    elif isinstance(cond, AnyOf):
        for c in cond.any_of:
            yield from _inputs(c, True)
    else:
        yield (cond if isinstance(cond, Input) else Input(dataset=cond)), any_of


def _label(contract: Contract, item: Input, any_of: bool) -> str:
    parts = []
    if any_of:
        parts.append("any of")
    if item.partitioned and item.partitioned != contract.partitioned:
        parts.append(str(item.partitioned))
    if item.offset:
        parts.append(f"offset {item.offset:+d}")
    if item.where:
        parts.append(f"where {item.where}")
    return ", ".join(parts)


def _trigger_label(contract: Contract, targets: Mapping[str, str]) -> str:
    fields = contract.trigger.fields()
    for key in ("dag_id", "job", "deployment", "asset_event", "assets"):
        if fields.get(key):
            value = fields[key]
            return value if isinstance(value, str) else json.dumps(value)
    return targets.get(contract.trigger.target, "")


def _id(node: str) -> str:
    """A node id both formats accept: its kind and a short hash (names hold dots)."""
    kind, _, name = node.partition(":")
    return f"{kind}_{hashlib.sha1(name.encode()).hexdigest()[:10]}"


def node_name(node: str) -> str:
    """The dataset, contract or target name of a node id."""
    return node.partition(":")[2]


def mermaid(graph: Graph) -> str:
    shapes = {"dataset": ("[(", ")]"), "contract": ("[", "]"), "target": ("{{", "}}")}
    lines = ["flowchart LR"]
    for node, kind in sorted(graph.nodes.items()):
        left, right = shapes[kind]
        lines.append(f'  {_id(node)}{left}"{_mermaid_text(node_name(node))}"{right}')
    for edge in graph.edges:
        arrow = f'-- "{_mermaid_text(edge.label)}" -->' if edge.label else "-->"
        lines.append(f"  {_id(edge.source)} {arrow} {_id(edge.target)}")
    lines += [f"  class {_id(n)} {kind}" for n, kind in sorted(graph.nodes.items())]
    lines += ["  classDef dataset fill:#eef6ff,stroke:#4a7ab5",
              "  classDef contract fill:#fff6e5,stroke:#b5842e",
              "  classDef target fill:#eefbea,stroke:#4f9a3a"]  # fmt: skip
    return "\n".join(lines)


def _mermaid_text(text: str) -> str:
    # Inside quotes Mermaid takes anything but a double quote; it reads entity codes.
    return text.replace('"', "#quot;")


def dot(graph: Graph) -> str:
    shapes = {"dataset": "cylinder", "contract": "box", "target": "hexagon"}
    lines = ["digraph baton {", "  rankdir=LR;", '  node [fontname="Helvetica"];']
    for node, kind in sorted(graph.nodes.items()):
        lines.append(f'  {_id(node)} [label="{_dot_text(node_name(node))}", shape={shapes[kind]}];')
    for edge in graph.edges:
        label = f' [label="{_dot_text(edge.label)}"]' if edge.label else ""
        lines.append(f"  {_id(edge.source)} -> {_id(edge.target)}{label};")
    lines.append("}")
    return "\n".join(lines)


def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
