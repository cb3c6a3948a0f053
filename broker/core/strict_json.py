"""Strict JSON: how every way in reads a request body, and what it refuses.

What Baton could not keep exactly as it was sent is refused, naming where it is (I-JSON,
RFC 7493, draws the same lines):
  - UTF-8, and no lone surrogate (`"\\ud800"`) in any string, keys included: it is no
    character, and could not be written to the stream
  - no NaN or Infinity (not JSON), no number past a double's range (`1e999`)
  - integers of at most MAX_DIGITS digits: CPython reads no longer ones (its guard
    against quadratic-time conversion, CVE-2020-10735), nor would the worker reading
    the stream. Shorter ones are kept exactly; a 64-bit bound would be tidier, but
    where values are free JSON (metadata, facets) no schema could say it
  - at most MAX_DEPTH levels of arrays and objects: room for an event's `metadata`
    (MAX_METADATA_DEPTH, `broker.core.events`) in its envelopes, and for OpenLineage facets

`read_body` answers the common body with one decode and two byte counts; `problems` walks
a value (only when the bytes give cause) and is also what the Event model asks of
metadata that comes from Python rather than from a body.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from broker.core.errors import EventRejected

MAX_DEPTH = 64
MAX_DIGITS = 4300  # sys.int_info.default_max_str_digits
_TOO_BIG = 10**MAX_DIGITS
_LONE = re.compile(r"[\ud800-\udfff]")
# A \uD800-\uDFFF escape: the only way a lone surrogate gets into a body read as UTF-8.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_MAX_PROBLEMS = 20
Where = tuple[str | int, ...]  # the keys and indexes down to a place in a JSON value


class BodyRefused(EventRejected):
    """The body is not JSON Baton can keep as sent (HTTP 400); `title` says which way."""

    def __init__(self, title: str, errors: list[tuple[str, str]]) -> None:
        super().__init__(errors)
        self.title = title


MALFORMED, UNSUPPORTED = "Malformed JSON", "Unsupported JSON"


def read_body(body: bytes) -> Any:
    """The JSON value of a request body, read strictly (the module docstring says how);
    BodyRefused names each place Baton cannot read."""
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        why = f"not UTF-8: {exc.reason} at byte {exc.start}"
        raise BodyRefused(MALFORMED, [("body", why)]) from exc
    try:
        data = _decode(_STRICT, text)
    except _Unkeepable:  # read it again, keeping what is wrong, to say where it is
        raise BodyRefused(UNSUPPORTED, problems(_decode(_LENIENT, text), MAX_DEPTH)) from None
    # Nothing can nest deeper than its count of brackets, and a lone surrogate needs an
    # escape: most bodies are done here without a walk.
    deep = body.count(b"[") + body.count(b"{") > MAX_DEPTH and _deeper_than(data, MAX_DEPTH)
    if (deep or _SURROGATE_ESCAPE.search(body)) and (found := problems(data, MAX_DEPTH)):
        raise BodyRefused(UNSUPPORTED, found)
    return data


class _Unkeepable(Exception):
    """A value `read_body` refuses, met while decoding."""


class _Bad:
    """Stands in for a refused value when a body is read again to find it."""

    __slots__ = ("why",)

    def __init__(self, why: str) -> None:
        self.why = why


def _decoder(strict: bool) -> json.JSONDecoder:
    def refuse(why: str) -> Any:
        if strict:
            raise _Unkeepable
        return _Bad(why)

    def integer(text: str) -> Any:
        try:
            return int(text)
        except ValueError:  # past the digits int() reads
            return refuse(f"{shown(text)} has more digits than the {MAX_DIGITS} Baton reads")

    def number(text: str) -> Any:
        value = float(text)
        return refuse(f"{shown(text)} is past a double's range") if math.isinf(value) else value

    return json.JSONDecoder(
        # strict: the C scanner's own int(), whose ValueError `_decode` takes as a refusal
        parse_int=None if strict else integer,
        parse_float=number,
        parse_constant=lambda name: refuse(f"{name} is not a JSON number"),
    )


_STRICT, _LENIENT = _decoder(strict=True), _decoder(strict=False)


def _decode(decoder: json.JSONDecoder, text: str) -> Any:
    try:
        return decoder.decode(text)
    except RecursionError:  # the decoder recurses per level: far past MAX_DEPTH
        raise BodyRefused(UNSUPPORTED, [("body", _TOO_DEEP.format(MAX_DEPTH))]) from None
    except json.JSONDecodeError as exc:
        raise BodyRefused(MALFORMED, [("body", f"not JSON: {exc}")]) from exc
    except ValueError as exc:  # an integer too long for int(): say where, on a second read
        raise _Unkeepable from exc


_TOO_DEEP = "nests deeper than {} levels of arrays and objects"


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays and objects in `value` nest more than `limit` levels: one level at
    a time, looking only at containers (the cheap question before `problems`)."""
    level = [value] if type(value) is dict or type(value) is list else []
    for _ in range(limit):
        below: list[Any] = []
        for item in level:
            for child in item.values() if type(item) is dict else item:
                # exact types: the decoder makes no subclasses, and this is 3x faster
                if type(child) is dict or type(child) is list:
                    below.append(child)
        if not below:
            return False
        level = below
    return True


def suspect(text: str, max_depth: int) -> bool:
    """Whether JSON text (as `json.dumps` writes it) might hold what `problems` refuses:
    enough brackets to nest too deep, or a surrogate escape (lone, or half of a pair)."""
    brackets = text.count("[") + text.count("{")
    return brackets > max_depth or bool(_SUSPECT.search(text))


_SUSPECT = re.compile(r"\\u[dD][89a-fA-F]")


def problems(value: Any, max_depth: int, root: str = "") -> list[tuple[str, str]]:
    """(path, why) for each part of a JSON value Baton cannot keep: containers nested
    past `max_depth`, lone surrogates (keys too), numbers outside the module's limits,
    values that are not JSON at all; the first _MAX_PROBLEMS, in document order."""
    found: list[tuple[Where, str]] = []
    stack: list[tuple[Where, Any]] = [((), value)]
    while stack and len(found) < _MAX_PROBLEMS:
        path, item = stack.pop()
        if not isinstance(item, dict | list | tuple):
            if (why := _scalar_problem(item)) is not None:
                found.append((path, why))
        elif len(path) >= max_depth:
            found.append((path, _TOO_DEEP.format(max_depth)))
        elif isinstance(item, dict):
            found += [((*path, k), why) for k in item if (why := _key_problem(k)) is not None]
            stack += [((*path, k), v) for k, v in reversed(item.items())]
        else:
            stack += [((*path, i), v) for i, v in reversed(list(enumerate(item)))]
    return [(path_text(root, path) or "body", why) for path, why in found[:_MAX_PROBLEMS]]


_LONE_SURROGATE = "holds a lone surrogate (U+D800 to U+DFFF), which is no character"


def _key_problem(key: Any) -> str | None:
    if not isinstance(key, str):
        return f"a {type(key).__name__} key is not JSON (keys are strings)"
    return "the key " + _LONE_SURROGATE if _LONE.search(key) else None


def _scalar_problem(item: Any) -> str | None:
    if isinstance(item, str):
        return _LONE_SURROGATE if _LONE.search(item) else None
    if item is None or isinstance(item, bool):
        return None
    if isinstance(item, int):
        return None if -_TOO_BIG < item < _TOO_BIG else f"has more than {MAX_DIGITS} digits"
    if isinstance(item, float):
        return None if math.isfinite(item) else f"{item} is not a JSON number"
    if isinstance(item, _Bad):
        return item.why
    return f"a {type(item).__name__} is not a JSON value"


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_$@:/~-]+")


def path_text(root: str, path: Where) -> str:
    """`events[1].metadata.row_count`, as field errors name places; a key that is not
    plain comes quoted (`metadata["a.b"]`), a lone surrogate escaped (`["k\\ud800"]`)."""
    text = root
    for step in path:
        if isinstance(step, int):
            text += f"[{step}]"
        elif _PLAIN_KEY.fullmatch(step):
            text += f".{step}" if text else step
        else:  # escaped only when it must be, so that the answer holds no lone surrogate
            text += f"[{json.dumps(shown(step), ensure_ascii=bool(_LONE.search(step)))}]"
    return text


def shown(text: str, limit: int = 40) -> str:
    """At most `limit` characters of something the sender wrote, for an error message."""
    return text if len(text) <= limit else f"{text[: limit - 3]}..."
