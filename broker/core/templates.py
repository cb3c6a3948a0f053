"""Trigger templates: sandboxed Jinja over nested values (dicts, lists, strings).

A string that is exactly one `{{ expression }}` renders to the expression's native value
(an int stays an int, a dict a dict); any other string renders to a string. Templates
run in Jinja's immutable sandbox with undefined names as errors, and within a budget per
render (`broker.core.template_limits` lists its limits: 100,000 steps, 1,000,000 characters
per value, ...; `broker.core.template_sandbox` says where it is charged), so that no template
can hang Baton or eat its memory.

What a trigger renders to must be sendable as JSON: dicts with string keys, lists (and
tuples, which JSON writes as lists: `|dictsort` makes them), strings (no lone
surrogates), finite floats, ints of at most MAX_INT_BITS bits, bools and None. The
literal parts are checked once, when compiled; each rendered value after its render.
Whatever goes wrong, compiling or rendering, is a `TemplateError` naming the path of
the value (`body.rows`, `window[0]`).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
import jinja2.meta

from broker.core.template_limits import (
    MAX_CHARS,
    MAX_INT_BITS,
    MAX_NESTING,
    Budget,
    BudgetExceeded,
    current,
)
from broker.core.template_sandbox import BoundedEnvironment

_SINGLE = re.compile(r"^\{\{(?!.*\{\{).*\}\}$", re.DOTALL)
# `{{ partition }}`: a name alone, which renders to what the context holds by that name
# (a render's variables come before Jinja's globals), so it is looked up without Jinja;
# the names Jinja reads as literals are not names.
_NAME = re.compile(r"^\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}$")
_LITERALS = frozenset({"true", "false", "none", "True", "False", "None"})
_MISSING = object()
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")

Where = tuple[str | int, ...]  # the keys and indexes down to a value


class TemplateError(ValueError):
    """A template that does not compile or render; the message names its path."""

    def __init__(self, path: Where, reason: str) -> None:
        super().__init__(f"{dotted(path) or 'value'}: {reason}")
        self.path = path
        self.reason = reason


class UnknownValue(jinja2.UndefinedError):
    """A sample render read a value known only at run time (see `unknown`)."""


def unknown(name: str) -> jinja2.Undefined:
    """A stand-in, in a sample context, for a value only a real trigger has (an input's
    metadata): a leaf that reads it renders as unknown, not as an error."""
    return jinja2.StrictUndefined(hint=f"{name} is known only at run time", exc=UnknownValue)


@dataclass(frozen=True)
class _Leaf:
    path: Where
    template: jinja2.Template | None = None  # a string with template syntax
    expression: Callable[..., Any] | None = None  # exactly one {{ expression }}
    name: str | None = None  # the expression is this name alone
    reads: frozenset[str] = frozenset()  # the context's names it reads


@dataclass(frozen=True)
class Template:
    """The compiled form of a nested value."""

    shape: Any
    templated: bool = True  # False: no leaf is a template, and rendering copies the shape
    # The context's names its leaves read (so that what none reads need not be made).
    reads: frozenset[str] = frozenset()

    def render(self, context: Mapping[str, Any]) -> Any:
        if not self.templated:
            return _render(self.shape, context)
        with Budget():
            return _render(self.shape, context)

    def render_sample(
        self, context: Mapping[str, Any], *, strict: bool = False
    ) -> tuple[Any, list[str]]:
        """Render what a sample context allows; a leaf it cannot (it reads an input's
        metadata, say) becomes None and its path is returned. With `strict`, only a leaf
        that reads an `unknown` value may be unknown; any other undefined is an error."""
        unknown_paths: list[str] = []
        with Budget():
            spec = _render(self.shape, context, _Sample(unknown_paths, strict))
        return spec, unknown_paths


def compile_template(value: Any) -> Template:
    """Compile every string leaf of `value`; raise TemplateError naming the first bad one."""
    shape = _compile(value, ())
    return Template(shape, templated=_has_leaf(shape), reads=frozenset(_reads(shape)))


@functools.cache
def _environment() -> BoundedEnvironment:
    """One environment compiles every template: it holds no state of a template's own
    (a render's budget is the caller's), and making one wraps every filter and test."""
    return BoundedEnvironment()


@functools.lru_cache(maxsize=8192)
def _compiled(source: str) -> tuple[Any, Any, frozenset[str]]:
    """(expression, template, the names it reads) for a leaf's text, one of the first
    two None. Contracts repeat their templates (`{{ partition }}` in thousands of them):
    each text is compiled once, and one compiled object serves them all (it is not
    changed by rendering)."""
    env = _environment()
    reads = frozenset(jinja2.meta.find_undeclared_variables(env.parse(source)))
    if _SINGLE.match(source.strip()):
        expression = env.compile_expression(source.strip()[2:-2], undefined_to_none=False)
        return expression, None, reads
    return None, env.from_string(source), reads


def _reads(shape: Any) -> Iterator[str]:
    if isinstance(shape, dict):
        for item in shape.values():
            yield from _reads(item)
    elif isinstance(shape, list):
        for item in shape:
            yield from _reads(item)
    elif isinstance(shape, _Leaf):
        yield from shape.reads


def _has_leaf(shape: Any) -> bool:
    if isinstance(shape, dict):
        return any(_has_leaf(v) for v in shape.values())
    if isinstance(shape, list):
        return any(_has_leaf(v) for v in shape)
    return isinstance(shape, _Leaf)


def _compile(value: Any, path: Where) -> Any:
    if isinstance(value, dict):
        for key in value:
            if type(key) is not str:
                raise TemplateError(path, f"has a key {key!r} that is not a string")
        return {k: _compile(v, (*path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_compile(v, (*path, i)) for i, v in enumerate(value)]
    if not isinstance(value, str) or ("{{" not in value and "{%" not in value):
        _check_sendable(value, path)
        return value
    try:
        expression, template, reads = _compiled(value)
        bare = _NAME.match(value)
        name = bare.group(1) if bare and bare.group(1) not in _LITERALS else None
        return _Leaf(path, expression=expression, template=template, name=name, reads=reads)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(path, f"does not compile: {exc.message or exc}") from exc
    except Exception as exc:  # nested past Python's limits, say: still the template's fault
        raise TemplateError(path, _reason(exc)) from exc


@dataclass(frozen=True)
class _Sample:
    unknown: list[str]
    strict: bool

    def unknowable(self, exc: TemplateError) -> bool:
        """Did the leaf fail only for reading what a sample cannot know?"""
        return isinstance(exc.__cause__, UnknownValue if self.strict else jinja2.UndefinedError)


def _render(shape: Any, context: Mapping[str, Any], sample: _Sample | None = None) -> Any:
    if isinstance(shape, dict):
        return {k: _render(v, context, sample) for k, v in shape.items()}
    if isinstance(shape, list):
        return [_render(v, context, sample) for v in shape]
    if not isinstance(shape, _Leaf):
        return shape
    if sample is None:
        return _render_leaf(shape, context)
    try:
        return _render_leaf(shape, context)
    except TemplateError as exc:
        if not sample.unknowable(exc):
            raise
        sample.unknown.append(dotted(shape.path))
        return None


def _render_leaf(leaf: _Leaf, context: Mapping[str, Any]) -> Any:
    try:
        # A name alone: what Jinja would have looked up, without a context made for it.
        value = context.get(leaf.name, _MISSING) if leaf.name is not None else _MISSING
        if value is _MISSING:
            if leaf.expression is not None:
                value = leaf.expression(**context)
            else:
                assert leaf.template is not None
                value = leaf.template.render(context)
        _check_sendable(value, leaf.path)
    except TemplateError:
        raise
    except Exception as exc:  # whatever a template made Jinja or Python raise
        raise TemplateError(leaf.path, _reason(exc)) from exc
    return value


def _reason(exc: Exception) -> str:
    if isinstance(exc, jinja2.TemplateError | BudgetExceeded | TypeError | ValueError):
        return str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# -- is it JSON? ---------------------------------------------------------------------------


class _Unsendable(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.where: list[str | int] = []  # filled in innermost first, as it unwinds


def _check_sendable(value: Any, path: Where) -> None:
    kind = type(value)
    if (kind is list or kind is dict or kind is tuple) and current().size(value) > MAX_CHARS:
        # Counted first, so that a list held many times over is not walked as many.
        raise TemplateError(path, f"renders to more than {MAX_CHARS:,} characters")
    try:
        _sendable(value, 0)
    except _Unsendable as exc:
        raise TemplateError((*path, *reversed(exc.where)), exc.reason) from None


def _sendable(value: Any, depth: int) -> None:
    """Raise _Unsendable unless `value` is plain JSON; exact types, so it stays cheap."""
    kind = type(value)
    if kind is str:
        _sendable_text(value)
    elif kind is int:
        if value.bit_length() > MAX_INT_BITS:
            raise _Unsendable(f"renders to an integer of more than {MAX_INT_BITS:,} bits")
    elif kind is float:
        if not math.isfinite(value):
            raise _Unsendable(f"renders to {value}, which cannot be sent as JSON")
    elif kind is list or kind is dict or kind is tuple:
        if depth >= MAX_NESTING:
            raise _Unsendable(f"nests lists and dicts deeper than {MAX_NESTING} levels")
        _sendable_items(value, depth + 1)
    elif not (kind is bool or value is None):
        _unsendable(value)


def _sendable_items(value: list[Any] | tuple[Any, ...] | dict[Any, Any], depth: int) -> None:
    pairs = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in pairs:
        if isinstance(value, dict):
            if type(key) is not str:
                raise _Unsendable(f"has a key {key!r} that is not a string")
            _sendable_text(key)
        try:
            _sendable(item, depth)
        except _Unsendable as exc:
            exc.where.append(key)
            raise


def _sendable_text(text: str) -> None:
    if len(text) > MAX_CHARS:
        raise _Unsendable(f"renders to more than {MAX_CHARS:,} characters")
    if not text.isascii() and _LONE_SURROGATE.search(text):
        raise _Unsendable("renders to text with a lone surrogate, which is no character")


def _unsendable(value: Any) -> None:
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()  # its own message: what was undefined
    name = type(value).__name__
    article = "an" if name[:1].lower() in "aeiou" else "a"
    raise _Unsendable(f"renders to {article} {name}, which cannot be sent as JSON")


def dotted(path: Where) -> str:
    """`body.rows`, `window[0]`: a path as the contract's YAML spells it."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.lstrip(".")
