"""Trigger templates: sandboxed Jinja over nested values (dicts, lists, strings).

A string that is exactly one `{{ expression }}` renders to the expression's native value
(an int stays an int, a dict a dict); any other string renders to a string. Templates
run in Jinja's immutable sandbox with undefined names as errors.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

_SINGLE = re.compile(r"^\{\{(?!.*\{\{).*\}\}$", re.DOTALL)


class TemplateError(ValueError):
    """A template that does not compile or render; the message names its path."""


def _environment() -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)


@dataclass(frozen=True)
class _Leaf:
    path: str
    source: str
    template: jinja2.Template | None = None  # a string with template syntax
    expression: Callable[..., Any] | None = None  # exactly one {{ expression }}


@dataclass(frozen=True)
class Template:
    """The compiled form of a nested value."""

    shape: Any

    def render(self, context: Mapping[str, Any]) -> Any:
        return _render(self.shape, context)

    def render_sample(self, context: Mapping[str, Any]) -> tuple[Any, list[str]]:
        """Render what a sample context allows; a leaf it cannot (it reads an input's
        metadata, say) becomes None and its path is returned."""
        unknown: list[str] = []
        return _render(self.shape, context, unknown), unknown


def compile_template(value: Any) -> Template:
    """Compile every string leaf of `value`; raise TemplateError naming the first bad one."""
    return Template(_compile(value, _environment(), ""))


def _compile(value: Any, env: ImmutableSandboxedEnvironment, path: str) -> Any:
    if isinstance(value, dict):
        return {k: _compile(v, env, f"{path}.{k}".lstrip(".")) for k, v in value.items()}
    if isinstance(value, list):
        return [_compile(v, env, f"{path}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value
    if "{{" not in value and "{%" not in value:
        return _Leaf(path, value)
    try:
        if _SINGLE.match(value.strip()):
            expression = env.compile_expression(value.strip()[2:-2], undefined_to_none=False)
            return _Leaf(path, value, expression=expression)
        return _Leaf(path, value, template=env.from_string(value))
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{path or 'value'}: {exc.message}") from exc


def _render(shape: Any, context: Mapping[str, Any], unknown: list[str] | None = None) -> Any:
    if isinstance(shape, dict):
        return {k: _render(v, context, unknown) for k, v in shape.items()}
    if isinstance(shape, list):
        return [_render(v, context, unknown) for v in shape]
    if not isinstance(shape, _Leaf):
        return shape
    if unknown is not None:
        return _render_or_none(shape, context, unknown)
    try:
        if shape.expression is not None:
            value = shape.expression(**context)
            if isinstance(value, jinja2.Undefined):
                value._fail_with_undefined_error()
            return value
        return shape.template.render(context) if shape.template else shape.source
    except (jinja2.UndefinedError, SecurityError, TypeError, ValueError) as exc:
        raise TemplateError(f"{shape.path or 'value'}: {exc}") from exc


def _render_or_none(leaf: _Leaf, context: Mapping[str, Any], unknown: list[str]) -> Any:
    try:
        return _render(leaf, context)
    except TemplateError:
        unknown.append(leaf.path)
        return None
