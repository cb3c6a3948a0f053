"""Jinja's immutable sandbox with every way to do work metered by `template_limits`.

Where a template can make Baton work, and what is charged there:
  1. calls (functions, methods, macros, `loop()`, `caller()`): a step each, the nesting
     depth, the arguments read, the value returned (`environment.call` sees every call)
  2. filters and tests: a step, the value read, the value returned (`template_guards`)
  3. `+ - * % **`: exponents, repeats and formats checked first, the result measured
  4. loops: a step per iteration, recursive loops too
  5. `~`, list, tuple and dict literals, slices: the value built; comparisons, keys of
     `[...]` and of dict literals: the values read (but for short constants)
  6. output: what `{{ }}` prints is bounded before it is printed, and
     `environment.concat` stops a render as soon as its text is too long
Points 4 and 5 have no hook in Jinja, so the parsed template is rewritten to pass those
values through internal filters, whose names (with a space) no template can write.
They are context filters, so Jinja never runs them at compile time, outside a budget.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from types import BuiltinMethodType, MethodType
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.runtime import Context, LoopContext, Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter
from jinja2.visitor import NodeTransformer
from markupsafe import EscapeFormatter, Markup

from broker.core import template_guards as guards
from broker.core import template_limits as limits

ITERATE, VALUE, CONCAT, SCAN = " iterate", " value", " concat", " scan"


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The environment every trigger template compiles in."""

    intercepted_binops = limits.INTERCEPTED
    concat = staticmethod(limits.concat)

    def __init__(self) -> None:
        super().__init__(undefined=jinja2.StrictUndefined, autoescape=False, finalize=_printable)
        self.policies["json.dumps_kwargs"] = {"sort_keys": True, "default": guards.json_default}
        self.filters = {**guards.metered_filters(self.filters), **_INTERNAL}
        self.tests = guards.metered_tests(self.tests)
        self.globals.update(
            range=guards.bounded_range,
            lipsum=guards.bounded_lipsum,
            namespace=guards.Namespace,
        )

    def compile(
        self,
        source: str | nodes.Template,
        name: str | None = None,
        filename: str | None = None,
        raw: bool = False,
        defer_init: bool = False,
    ) -> Any:
        tree = self.parse(source, name, filename) if isinstance(source, str) else source
        tree = _Meter().visit(tree)
        tree.set_environment(self)
        return super().compile(tree, name, filename, raw, defer_init)  # type: ignore[call-overload]

    def call(
        __self,  # Jinja's own spelling: a call from a template may pass `self=` on
        __context: Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        budget = limits.current()
        budget.step()
        built = not isinstance(__obj, Macro)  # a macro's text was charged as it was written
        if isinstance(__obj, LoopContext):  # a recursive loop going one level deeper
            args = (_metered(args[0]), *args[1:]) if args else args
        elif built:
            args = guards.guard_call(budget, __obj, args, kwargs)
        budget.depth += 1
        try:
            if budget.depth > limits.MAX_CALL_DEPTH:
                raise limits.BudgetExceeded(
                    f"nests calls deeper than {limits.MAX_CALL_DEPTH} (a macro calling itself?)"
                )
            result = super().call(__context, __obj, *args, **kwargs)
        finally:
            budget.depth -= 1
        return budget.measure(result) if built and _new(result, __obj) else result

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        return limits.binop(operator, left, right)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """Jinja's own, with a formatter that bounds widths and the text it writes."""
        if not isinstance(value, MethodType | BuiltinMethodType):
            return None
        owner = value.__self__
        if value.__name__ not in ("format", "format_map") or not isinstance(owner, str):
            return None
        is_map = value.__name__ == "format_map"

        def bounded(*args: Any, **kwargs: Any) -> str:
            if is_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one positional argument")
                mapping = args[0]
                args, kwargs = (), mapping
            formatter = (
                _BoundedEscape(self, escape=owner.escape)
                if isinstance(owner, Markup)
                else _Bounded(self)
            )
            return type(owner)(formatter.vformat(owner, args, kwargs))

        bounded.__name__ = value.__name__
        return bounded


def _new(result: Any, called: Any) -> bool:
    """Is `result` something the call built, not a value it looked up or a view?"""
    if isinstance(result, _LOOKED_AT) or result is getattr(called, "__self__", None):
        return False
    return getattr(called, "__name__", "") != "get"


_LOOKED_AT: tuple[type, ...] = (range, type({}.keys()), type({}.values()), type({}.items()))


def _printable(value: Any) -> Any:
    """`finalize`: what `{{ }}` prints (through str()) is bounded first."""
    return value if type(value) is str else limits.current().printable(value)


# -- the rewrite of the parsed template (points 4 and 5) -----------------------------------


class _Meter(NodeTransformer):
    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _through(ITERATE, node.iter)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _through(CONCAT, nodes.List(node.nodes, lineno=node.lineno))

    def visit_List(self, node: nodes.List) -> nodes.Node:
        self.generic_visit(node)
        return _through(VALUE, node)

    def visit_Dict(self, node: nodes.Dict) -> nodes.Node:
        self.generic_visit(node)
        for pair in node.items:
            pair.key = _scanned(pair.key)  # hashed whole
        return _through(VALUE, node)

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:
        self.generic_visit(node)
        return _through(VALUE, node) if node.ctx == "load" else node

    def visit_Getitem(self, node: nodes.Getitem) -> nodes.Node:
        self.generic_visit(node)
        if isinstance(node.arg, nodes.Slice):
            return _through(VALUE, node)
        node.arg = _scanned(node.arg)  # a key is hashed whole at every lookup
        return node

    def visit_Compare(self, node: nodes.Compare) -> nodes.Node:
        self.generic_visit(node)
        node.expr = _scanned(node.expr)
        for operand in node.ops:
            operand.expr = _scanned(operand.expr)
        return node


def _through(name: str, node: nodes.Node) -> nodes.Filter:
    return nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)


def _scanned(node: nodes.Expr) -> nodes.Expr:
    """`node` read through SCAN, unless it is a short constant (most keys and operands)."""
    if isinstance(node, nodes.Const) and len(str(node.value)) <= _SHORT:
        return node
    return _through(SCAN, node)


_SHORT = 256


def _metered(iterable: Iterable[Any]) -> Iterator[Any]:
    budget = limits.current()
    for item in iterable:
        budget.step()
        yield item


def _concat(parts: list[Any]) -> str:
    budget = limits.current()
    return limits.concat(str(budget.printable(part)) for part in parts)


def _scan(value: Any) -> Any:
    limits.current().scan(value)
    return value


_INTERNAL = {
    ITERATE: jinja2.pass_context(lambda context, value: _metered(value)),
    VALUE: jinja2.pass_context(lambda context, value: limits.current().measure(value)),
    CONCAT: jinja2.pass_context(lambda context, parts: _concat(parts)),
    SCAN: jinja2.pass_context(lambda context, value: _scan(value)),
}


# -- str.format ----------------------------------------------------------------------------


class _Bounded(SandboxedFormatter):
    """str.format's formatter, refusing wide fields and text past MAX_CHARS."""

    def __init__(self, env: jinja2.Environment, **kwargs: Any) -> None:
        super().__init__(env, **kwargs)
        self.written = 0

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        return super().convert_field(limits.current().printable(value), conversion)

    def format_field(self, value: Any, format_spec: str) -> Any:
        for digits in _DIGITS.findall(format_spec):
            if len(digits) > 7 or int(digits) > limits.MAX_CHARS:
                raise limits.BudgetExceeded(
                    f"asks for a field width or precision past {limits.MAX_CHARS:,}"
                )
        text = super().format_field(limits.current().printable(value), format_spec)
        self.written += len(text)
        limits.would_build(self.written, "formatted string")
        return text


class _BoundedEscape(_Bounded, EscapeFormatter):
    pass


_DIGITS = re.compile(r"\d+")
