"""`where` filters: a small, safe expression language over an event. Never eval.

    metadata.row_count > 0 and status == "success"
    partition in ["2026-11-23", "2026-11-24"] or not metadata.partial

The source is parsed by Python's `ast` and walked over a whitelist of nodes; names are
the event's fields. A missing field is None, and a comparison that cannot be made
(None, mismatched types) is simply false, so an event lacking a field does not pass.

Nesting is limited at compile time (`MAX_DEPTH`), so evaluation, which recurses once or
twice per level, stays far from Python's recursion limit.
"""

from __future__ import annotations

import ast
import functools
import operator
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

MAX_LENGTH = 1000
# Real filters nest a few levels; 1000 characters could nest ~500 (`- - - x`, `a.b.c`).
MAX_DEPTH = 32
NAMES = frozenset(
    {"dataset", "partition", "status", "producer", "event_id", "metadata", "occurred_at"}
)
CONSTANTS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "len": lambda v: len(v) if isinstance(v, str | list | dict) else None,
    "exists": lambda v: v is not None,
}


class ExpressionError(ValueError):
    """The expression cannot be used; the message names the column."""


@dataclass(frozen=True)
class Expression:
    source: str
    tree: ast.Expression

    def evaluate(self, event: Mapping[str, Any]) -> bool:
        try:
            return bool(_eval(self.tree.body, event))
        # RecursionError: comparing event metadata nested too deep is a comparison that
        # cannot be made (the expression itself is shallow, by MAX_DEPTH).
        except (TypeError, ValueError, KeyError, AttributeError, RecursionError):
            return False


@functools.lru_cache(maxsize=8192)
def compile_expression(source: str) -> Expression:
    """The checked expression for `source`; one per text, shared (contracts repeat their
    `where` rules, and an Expression is never changed once made)."""
    if len(source) > MAX_LENGTH:
        raise ExpressionError(f"longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"column {exc.offset}: {exc.msg}") from exc
    except (ValueError, MemoryError, RecursionError) as exc:  # a NUL; too complex to parse
        raise ExpressionError(f"cannot be parsed: {exc}") from exc
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_DEPTH:  # fewer nodes cannot nest that deep: the common case
        _check_depth(tree)
    for node in nodes:
        _allow(node)
    return Expression(source, tree)


def _check_depth(tree: ast.Expression) -> None:
    """Refuse an expression inside more than MAX_DEPTH others; breadth first, as
    `ast.walk`, so without recursion."""
    todo: deque[tuple[ast.AST, int]] = deque([(tree, 0)])
    while todo:
        node, depth = todo.popleft()
        if depth > MAX_DEPTH and isinstance(node, ast.expr):  # operators carry no column
            raise ExpressionError(f"{_column(node)}: nested deeper than {MAX_DEPTH} levels")
        inner = depth + isinstance(node, ast.expr)
        todo.extend((child, inner) for child in ast.iter_child_nodes(node))


def _column(node: ast.AST) -> str:
    return f"column {getattr(node, 'col_offset', 0) + 1}"


_ALLOWED = (
    ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.Compare,
    ast.Constant, ast.Name, ast.Load, ast.Attribute, ast.Subscript, ast.List, ast.Tuple, ast.Call,
    *_COMPARE,
)  # fmt: skip


def _allow(node: ast.AST) -> None:
    where = _column(node)
    if not isinstance(node, _ALLOWED):
        raise ExpressionError(f"{where}: {type(node).__name__} is not allowed in a filter")
    if isinstance(node, ast.Name) and node.id not in NAMES and node.id not in CONSTANTS:
        raise ExpressionError(
            f"{where}: unknown name {node.id!r}; use one of {', '.join(sorted(NAMES))}"
        )
    if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
        raise ExpressionError(f"{where}: {node.attr!r}: names starting with _ are not allowed")
    if isinstance(node, ast.Call) and not (
        isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS and not node.keywords
    ):
        raise ExpressionError(f"{where}: only {', '.join(_FUNCTIONS)} can be called")
    if isinstance(node, ast.Subscript) and not isinstance(node.slice, ast.Constant):
        raise ExpressionError(f"{where}: an index must be a constant, like metadata['rows']")


def _eval(node: ast.expr, event: Mapping[str, Any]) -> Any:  # noqa: PLR0911 - one case per node
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return CONSTANTS[node.id] if node.id in CONSTANTS else event.get(node.id)
    if isinstance(node, ast.Attribute | ast.Subscript):
        return _lookup(node, event)
    if isinstance(node, ast.BoolOp):
        values = (_eval(v, event) for v in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, event)
        return (not value) if isinstance(node.op, ast.Not) else -value
    if isinstance(node, ast.Compare):
        return _compare(node, event)
    if isinstance(node, ast.List | ast.Tuple):
        return [_eval(e, event) for e in node.elts]
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    return _FUNCTIONS[node.func.id](_eval(node.args[0], event) if node.args else None)


def _lookup(node: ast.Attribute | ast.Subscript, event: Mapping[str, Any]) -> Any:
    container = _eval(node.value, event)
    key = node.attr if isinstance(node, ast.Attribute) else node.slice.value  # type: ignore[attr-defined]
    if isinstance(container, Mapping):
        return container.get(key)
    if (
        isinstance(container, list)
        and isinstance(key, int)
        and -len(container) <= key < len(container)
    ):
        return container[key]
    return None


def _compare(node: ast.Compare, event: Mapping[str, Any]) -> bool:
    left = _eval(node.left, event)
    for op, right_node in zip(node.ops, node.comparators, strict=True):
        right = _eval(right_node, event)
        if (left is None or right is None) and not isinstance(op, ast.Eq | ast.NotEq):
            return False
        if not _COMPARE[type(op)](left, right):
            return False
        left = right
    return True
