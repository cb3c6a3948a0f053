"""The budget of one trigger render, so that no template can hang Baton or eat its memory.

Jinja's sandbox keeps a template away from Python's internals, not from asking for work:
`{{ 9**(9**9) }}`, `{{ 'a' * 10**9 }}` or a macro that calls itself twice, forty deep,
all pass it. So every render carries a `Budget`, and the sandbox (`template_sandbox`)
charges it wherever work can grow: each call, filter, test and loop iteration is a step;
each value a template builds is measured; each value it reads whole (compares, hashes,
prints) is charged for its size. An argument that asks for size (a width, a count, a
padding, a precision, an exponent, a repeat) is checked before the work is done, so that
nothing is built only to be refused.

The limits, per render of one trigger (all its fields together), are far above what a
trigger template needs (a few dozen steps, values of a few kilobytes):

  MAX_STEPS         100,000  calls (functions, methods, macros), filters, tests and loop
                             iterations
  MAX_CHARS       1,000,000  the size of any one value built, or printed: a string's
                             length; a list's or dict's, with all it holds, as text
  MAX_WORK       10,000,000  characters built or read in all
  MAX_INT_BITS        4,096  an integer that arithmetic makes (about 1,233 digits)
  MAX_CALL_DEPTH         50  calls and macros nested in one another
  MAX_NESTING           100  lists and dicts nested in one another

A size counts what a list holds each time it holds it: `[x, x]` is twice `x`, so that
no chain of such lists (each twice the last) can hide an exponential amount of text.
Going past a limit raises `BudgetExceeded`, whose message names it. The worst a template
can do within them is well under a second of work and some tens of megabytes.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any

MAX_STEPS = 100_000
MAX_CHARS = 1_000_000
MAX_WORK = 10_000_000
MAX_INT_BITS = 4096
MAX_CALL_DEPTH = 50
MAX_NESTING = 100

TEXT = (str, bytes)
SEQUENCES = (str, bytes, list, tuple)
SIZED = (str, bytes, list, tuple, dict)


class BudgetExceeded(Exception):
    """A render went past one of its limits; the message says which."""


class Budget:
    """What one render may still spend; `with Budget():` makes it the current one."""

    __slots__ = ("_token", "depth", "sizes", "steps", "work")

    def __init__(self) -> None:
        self.steps = MAX_STEPS
        self.work = MAX_WORK
        self.depth = 0
        # id -> (value, size) of the lists and dicts measured so far, so that a value
        # held many times over is walked once. The value is held so its id is not reused;
        # all it can keep alive was charged to `work` when it was built.
        self.sizes: dict[int, tuple[object, int]] = {}
        self._token: Token[Budget] | None = None

    def __enter__(self) -> Budget:
        self._token = _CURRENT.set(self)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._token is not None:
            _CURRENT.reset(self._token)

    def step(self) -> None:
        self.steps -= 1
        if self.steps < 0:
            raise BudgetExceeded(
                f"takes more than {MAX_STEPS:,} steps (calls, filters, tests, loop iterations)"
            )

    def spend(self, chars: int) -> None:
        self.work -= chars
        if self.work < 0:
            raise BudgetExceeded(f"builds or reads more than {MAX_WORK:,} characters in all")

    def size(self, value: Any, limit: int = MAX_CHARS) -> int:
        """About how long `value` is as text, or some number past `limit`."""
        return len(value) if type(value) is str else _size(value, self.sizes, 0, limit)

    def scan(self, value: Any) -> None:
        """Charge reading `value` whole (comparing, hashing or printing it)."""
        if type(value) is str:
            self.spend(len(value))
        else:  # walking it costs about what it is charged, so walk no further than that
            self.spend(_size(value, self.sizes, 0, self.work))

    def measure(self, value: Any) -> Any:
        """`value`, once it is known to be small enough; charge building it."""
        chars = self.size(value)
        if chars > MAX_CHARS:
            raise BudgetExceeded(f"builds a value of more than {MAX_CHARS:,} characters")
        self.spend(chars)
        return value

    def printable(self, value: Any) -> Any:
        """`value`, once it is known to print to at most MAX_CHARS; charge reading it."""
        if type(value) is not str:
            chars = self.size(value)
            if chars > MAX_CHARS:
                raise BudgetExceeded(f"prints a value of more than {MAX_CHARS:,} characters")
            self.spend(chars)
        return value


# The budget of the render in progress. A ContextVar, not module state: renders in other
# threads or tasks each see their own.
_CURRENT: ContextVar[Budget] = ContextVar("baton_template_budget")


def current() -> Budget:
    """The render's budget; outside a render (Jinja folding constants at compile time),
    a fresh one, so that each value is still bounded though no total is kept."""
    return _CURRENT.get(None) or Budget()


def spend(chars: int) -> None:
    current().spend(chars)


def size_of(value: Any) -> int:
    return current().size(value)


def check_digits(digits: int, what: str) -> None:
    """Refuse a precision that would make Python compute 10**digits."""
    most = MAX_INT_BITS * 3 // 10
    if abs(digits) > most:
        raise BudgetExceeded(f"asks for a {what} of {digits:,} digits; at most {most:,}")


def at_most(asked: Any, what: str) -> None:
    """Refuse an argument that asks for more than one value may hold."""
    if isinstance(asked, int) and asked > MAX_CHARS:
        raise BudgetExceeded(f"asks for a {what} of {asked:,}; at most {MAX_CHARS:,}")


def would_build(chars: int, what: str) -> None:
    if chars > MAX_CHARS:
        raise BudgetExceeded(f"would build a {what} of about {chars:,} characters")


def concat(parts: Iterable[str]) -> str:
    """Join a template's output, refusing it as soon as it grows past MAX_CHARS."""
    out: list[str] = []
    total = 0
    for part in parts:
        total += len(part)
        if total > MAX_CHARS:
            raise BudgetExceeded(f"writes more than {MAX_CHARS:,} characters")
        out.append(part)
    budget = current()
    budget.step()
    budget.spend(total)
    return "".join(out)


# -- sizes ---------------------------------------------------------------------------------

_SCALAR = 8  # a float, a bool, None, or anything else whose text does not grow
_CONTAINERS = (list, tuple, dict, set, frozenset)
_MAPPING_VIEWS: tuple[type, ...] = (type({}.keys()), type({}.values()), type({}.items()))


def _size(value: Any, memo: dict[int, tuple[object, int]], depth: int, limit: int) -> int:
    if isinstance(value, TEXT):
        return len(value)
    if isinstance(value, int):
        return value.bit_length() // 3 + 1
    if isinstance(value, _CONTAINERS):
        known = memo.get(id(value))
        return known[1] if known is not None else _walk(value, memo, depth, limit)
    if isinstance(value, _MAPPING_VIEWS):  # prints as the dict it views
        return _size(getattr(value, "mapping", None), memo, depth, limit)
    return _SCALAR


def _walk(value: Any, memo: dict[int, tuple[object, int]], depth: int, limit: int) -> int:
    if depth >= MAX_NESTING:
        raise BudgetExceeded(f"nests lists and dicts deeper than {MAX_NESTING} levels")
    # Each item costs its own text plus a separator and quotes, as in JSON or repr().
    total = 2
    pairs = value.items() if isinstance(value, dict) else ((item, "") for item in value)
    for key, item in pairs:
        total += _size(key, memo, depth + 1, limit) + _size(item, memo, depth + 1, limit) + 4
        if total > limit:
            return total  # past the limit, how far does not matter: not kept
    memo[id(value)] = (value, total)
    return total


# -- operators -----------------------------------------------------------------------------

_OPERATORS: Mapping[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "%": operator.mod,
    "**": operator.pow,
}
INTERCEPTED = frozenset(_OPERATORS)


def binop(op: str, left: Any, right: Any) -> Any:
    """`left <op> right` for the operators that can build big values."""
    if op == "*":
        _check_product(left, right)
    elif op == "**":
        _check_power(left, right)
    elif op == "%" and isinstance(left, TEXT):
        would_build(printf_size(left, right), "formatted string")
    return _result(_OPERATORS[op](left, right))


def _result(value: Any) -> Any:
    kind = type(value)
    if kind is int:
        _check_bits(value.bit_length())
        return value
    if kind is float or kind is bool:
        return value
    return current().measure(value)


def _check_bits(bits: int) -> None:
    if bits > MAX_INT_BITS:
        raise BudgetExceeded(f"makes an integer of more than {MAX_INT_BITS:,} bits")


def _check_product(left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int):
        _check_bits(left.bit_length() + right.bit_length() - 1)
        return
    count, repeated = (right, left) if isinstance(right, int) else (left, right)
    if isinstance(count, int) and count > 0 and isinstance(repeated, SEQUENCES):
        would_build(size_of(repeated) * count, "repetition")


def _check_power(base: Any, exponent: Any) -> None:
    if not (isinstance(base, int) and isinstance(exponent, int)):
        return  # a float overflows by itself (OverflowError)
    if exponent > 0 and abs(base) > 1:
        # |base| >= 2, so the result has at least `exponent` bits.
        _check_bits(exponent)
        _check_bits(math.ceil(exponent * math.log2(abs(base))))


# One %-conversion: (key)flags width .precision length type; or a `%` none of that fits.
_SPEC = re.compile(r"%(?:\(([^()]*)\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?(.)|%")


def printf_size(fmt: str | bytes, args: Any) -> int:
    """An upper bound on `len(fmt % args)`, found without building it."""
    text = fmt.decode("latin-1") if isinstance(fmt, bytes) else fmt
    positional = iter(args if isinstance(args, tuple) else (args,))
    total = len(text)
    for match in _SPEC.finditer(text):
        key, width, precision, conversion = match.groups()
        if conversion is None:
            if text.startswith("%(", match.start()):
                raise BudgetExceeded("has a %-format key with parentheses in it")
            continue  # not a conversion: Python refuses it without building anything
        if conversion == "%":
            continue
        wide = _star_or_digits(width, positional) + _star_or_digits(precision, positional)
        value = args.get(key) if key is not None and isinstance(args, Mapping) else None
        if key is None:
            value = next(positional, None)
        # repr() (%r, %a) writes a character as up to 10 (\U0001f600); floats up to ~330.
        grows = 10 if conversion in "ra" else 1
        total += wide + size_of(value) * grows + 330
    return total


def _star_or_digits(given: str | None, positional: Iterator[Any]) -> int:
    if given == "*":
        taken = next(positional, 0)
        return abs(taken) if isinstance(taken, int) else 0
    if given and len(given) > 7:
        raise BudgetExceeded(f"asks for a width or precision of more than {MAX_CHARS:,}")
    return int(given) if given else 0
