"""Jinja's filters, tests, globals and str methods, each metered by `template_limits`.

Every filter and test becomes a context filter or test (so that Jinja never runs it at
compile time, outside any budget) that charges a step and the value it reads, then
measures what it returns. A filter's Markup (`tojson`, `e`) is returned as plain text:
with autoescape off it means nothing, and a trigger must be plain JSON data.
Those that take a size, or build far more than they read, have a guard that refuses the
arguments before the work is done:
  filters   center, indent, wordwrap, format, replace, join, batch, slice, round,
            tojson (indent), sum (of lists), urlize
  tests     odd, even, divisibleby (`'%0999999999d' is odd` formats the string)
  methods   str/bytes center, ljust, rjust, zfill, expandtabs, join, replace,
            translate; int to_bytes (see `guard_call`)
  globals   range (at most MAX_STEPS numbers), lipsum (its size), namespace (opaque
            as text, as it can change after a list that holds it was measured)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import update_wrapper
from typing import Any

import jinja2
from jinja2.runtime import Context
from jinja2.utils import Namespace as JinjaNamespace
from jinja2.utils import generate_lorem_ipsum
from markupsafe import Markup

from broker.core import template_limits as limits

Guard = Callable[..., Any]  # (value, *args, **kwargs) -> the value to pass on

# Filters that do not read their value whole: charged for its length, not its size.
_SHALLOW = frozenset({
    "abs", "attr", "batch", "count", "d", "default", "first", "float", "int", "items",
    "last", "length", "list", "map", "random", "reject", "rejectattr", "reverse", "round",
    "select", "selectattr", "slice", "sum",
})  # fmt: skip


def metered_filters(filters: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _filter(name, func) for name, func in filters.items()}


def metered_tests(tests: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _test(func, _TEST_GUARDS.get(name)) for name, func in tests.items()}


def _filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    lead = _leading_argument(func)
    guard = _FILTER_GUARDS.get(name)
    shallow = name in _SHALLOW

    @jinja2.pass_context
    def metered(context: Context, value: Any, *args: Any, **kwargs: Any) -> Any:
        budget = limits.current()
        budget.step()
        if not shallow:
            budget.scan(value)
        elif isinstance(value, limits.SIZED):
            budget.spend(len(value))
        given = value if guard is None else guard(value, *args, **kwargs)
        result = func(*lead(context), given, *args, **kwargs)
        if type(result) is Markup:  # HTML-safe text means nothing here: send it as text
            result = str(result)
        return result if result is value else budget.measure(result)

    return update_wrapper(metered, func, assigned=("__name__", "__doc__"), updated=())


def _test(func: Callable[..., Any], guard: Guard | None) -> Callable[..., Any]:
    lead = _leading_argument(func)

    @jinja2.pass_context
    def metered(context: Context, value: Any, *args: Any, **kwargs: Any) -> Any:
        budget = limits.current()
        budget.step()
        for read in (value, *args):
            budget.scan(read)
        if guard is not None:
            guard(value, *args, **kwargs)
        return func(*lead(context), value, *args, **kwargs)

    return update_wrapper(metered, func, assigned=("__name__", "__doc__"), updated=())


def _leading_argument(func: Callable[..., Any]) -> Callable[[Context], tuple[Any, ...]]:
    """What Jinja would pass `func` before the value, now that a context filter wraps it."""
    kind = getattr(getattr(func, "jinja_pass_arg", None), "name", None)
    if kind == "context":
        return lambda context: (context,)
    if kind == "eval_context":
        return lambda context: (context.eval_ctx,)
    if kind == "environment":
        return lambda context: (context.environment,)
    return lambda context: ()


# -- filter guards: each has the filter's own parameters -----------------------------------


def _center(value: Any, width: Any = 80, *_: Any, **__: Any) -> Any:
    limits.at_most(width, "width")
    return value


def _indent(s: Any, width: Any = 4, *_: Any, **__: Any) -> Any:
    pad = len(width) if isinstance(width, str) else width
    if isinstance(pad, int):
        text = str(s)
        limits.would_build(len(text) + (text.count("\n") + 1) * pad, "indented text")
    return s


def _wordwrap(s: Any, width: Any = 79, _long: Any = True, wrapstring: Any = None,
              *_: Any, **__: Any) -> Any:  # fmt: skip
    text, joint = str(s), str(wrapstring or "\n")
    if isinstance(width, int) and width > 0:
        # A line holds at least half its width, but for a word longer than the rest.
        lines = 2 * len(text) // width + 1
        limits.would_build(len(text) + lines * len(joint), "wrapped text")
    return s


def _format(value: Any, *args: Any, **kwargs: Any) -> Any:
    limits.would_build(limits.printf_size(str(value), kwargs or args), "formatted string")
    return value


def _replace(s: Any, old: Any, new: Any, count: Any = None) -> Any:
    text, old, new = str(s), str(old), str(new)
    times = text.count(old)
    if isinstance(count, int) and count >= 0:
        times = min(times, count)
    limits.would_build(len(text) + times * max(0, len(new) - len(old)), "replacement")
    return s


def _join(value: Any, d: Any = "", *_: Any, **__: Any) -> Any:
    items = list(value)
    glue = len(str(d)) * len(items)
    limits.would_build(sum(limits.size_of(item) for item in items) + glue, "joined string")
    return items


def _batch(value: Any, linecount: Any = 1, *_: Any, **__: Any) -> Any:
    limits.at_most(linecount, "batch size")
    return value


def _slice(value: Any, slices: Any = 1, *_: Any, **__: Any) -> Any:
    limits.at_most(slices, "number of slices")
    return value


def _round(value: Any, precision: Any = 0, *_: Any, **__: Any) -> Any:
    if isinstance(precision, int):
        limits.check_digits(precision, "rounding precision")
    return value


def _tojson(value: Any, indent: Any = None) -> Any:
    if indent is None:
        return value
    width = len(indent) if isinstance(indent, str) else indent
    widest = limits.MAX_CHARS // limits.MAX_NESTING  # so that one line stays below MAX_CHARS
    if isinstance(width, int) and width > widest:
        raise limits.BudgetExceeded(f"asks for a JSON indent of {width:,}; at most {widest:,}")
    # Indenting repeats the indent on every line: count the text chunk by chunk first.
    written = 0
    encoder = json.JSONEncoder(indent=indent, sort_keys=True, default=json_default)
    for chunk in encoder.iterencode(value):
        written += len(chunk)
        limits.would_build(written, "JSON text")
    return value


def json_default(value: Any) -> Any:
    """`tojson` on what it cannot write: an undefined value fails as undefined (a sample
    render's unknown stays unknown), anything else as json.dumps would."""
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _sum(iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
    items = list(iterable)
    if not isinstance(start, int | float):
        # Adding lists or tuples copies the total so far each time: quadratic.
        sizes = sum(limits.size_of(item) for item in items) + limits.size_of(start)
        limits.spend(sizes * len(items))
    return items


def _urlize(value: Any, *args: Any, **kwargs: Any) -> Any:
    text = str(value)
    given = (*args[2:4], kwargs.get("target"), kwargs.get("rel"))  # target=, rel=
    attributes = sum(len(str(a)) for a in given if a) + 80
    # Every URL (3 characters at least) is written twice over, with the attributes.
    limits.would_build(2 * len(text) + (len(text) // 3 + 1) * attributes, "linked text")
    return value


_FILTER_GUARDS: Mapping[str, Guard] = {
    "center": _center,
    "indent": _indent,
    "wordwrap": _wordwrap,
    "format": _format,
    "replace": _replace,
    "join": _join,
    "batch": _batch,
    "slice": _slice,
    "round": _round,
    "tojson": _tojson,
    "sum": _sum,
    "urlize": _urlize,
}


def _modulo(value: Any, *args: Any, **kwargs: Any) -> None:
    if isinstance(value, limits.TEXT):
        limits.would_build(limits.printf_size(value, args[0] if args else 2), "formatted string")


_TEST_GUARDS: Mapping[str, Guard] = {"odd": _modulo, "even": _modulo, "divisibleby": _modulo}


# -- calls ---------------------------------------------------------------------------------


def guard_call(budget: limits.Budget, obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
               ) -> tuple[Any, ...]:  # fmt: skip
    """Charge what a call of a Python function or method reads (it may hash or compare
    its arguments whole); refuse what a string method would build too big."""
    for value in (*args, *kwargs.values()):
        budget.scan(value)
    owner = getattr(obj, "__self__", None)
    if isinstance(owner, limits.SEQUENCES):
        budget.scan(owner)  # index(), count(), split() read it all
        guard = _TEXT_METHODS.get(getattr(obj, "__name__", ""))
        if guard is not None and isinstance(owner, limits.TEXT):
            return guard(owner, args, kwargs)
    elif isinstance(owner, int) and getattr(obj, "__name__", "") == "to_bytes":
        limits.at_most(args[0] if args else kwargs.get("length", 1), "length")
    return args


MethodGuard = Callable[[Any, tuple[Any, ...], dict[str, Any]], tuple[Any, ...]]


def _pad(owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    if args:
        limits.at_most(args[0], "width")
    return args


def _expandtabs(owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    size = args[0] if args else kwargs.get("tabsize", 8)
    if isinstance(size, int):
        tabs = owner.count("\t" if isinstance(owner, str) else b"\t")
        limits.would_build(len(owner) + tabs * size, "expanded text")
    return args


def _join_method(owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    if not args:
        return args
    items = list(args[0])
    glue = len(owner) * len(items)
    limits.would_build(sum(limits.size_of(item) for item in items) + glue, "joined string")
    return (items, *args[1:])


def _replace_method(owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    if len(args) >= 2 and isinstance(args[0], type(owner)) and isinstance(args[1], type(owner)):
        old, new = args[0], args[1]
        count = args[2] if len(args) > 2 else kwargs.get("count", -1)
        times = owner.count(old)
        if isinstance(count, int) and count >= 0:
            times = min(times, count)
        limits.would_build(len(owner) + times * max(0, len(new) - len(old)), "replacement")
    return args


def _translate(owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    table = args[0] if args else None
    if isinstance(owner, str) and isinstance(table, Mapping | list | tuple):
        values = table.values() if isinstance(table, Mapping) else table
        widest = max((limits.size_of(v) for v in values), default=1)
        limits.would_build(len(owner) * widest, "translated text")
    return args


_TEXT_METHODS: Mapping[str, MethodGuard] = {
    "center": _pad,
    "ljust": _pad,
    "rjust": _pad,
    "zfill": _pad,
    "expandtabs": _expandtabs,
    "join": _join_method,
    "replace": _replace_method,
    "translate": _translate,
}


# -- globals -------------------------------------------------------------------------------


def bounded_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > limits.MAX_STEPS:
        raise limits.BudgetExceeded(
            f"asks for a range of {len(numbers):,} numbers; at most {limits.MAX_STEPS:,}"
        )
    return numbers


def bounded_lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    if isinstance(n, int) and isinstance(max, int):
        limits.would_build(n * max * 12, "lorem ipsum")  # 12: a word and its space, at most
    return generate_lorem_ipsum(n, html, min, max)


class Namespace(JinjaNamespace):
    """`namespace()`, whose text does not show what it holds."""

    def __repr__(self) -> str:
        return "<namespace>"
