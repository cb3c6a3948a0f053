"""Contracts as a running set keeps them: compact, frozen, built once validated.

`spec.py` validates a contract file's data (pydantic, strict, with the field and line
of each error) and publishes its schema; a validated contract is then kept in this
form, plain slotted dataclasses with the same fields: a pydantic model holds its fields
in a dict of its own, beside the set of fields given, ~2.1 of the ~3.5 KB a contract
took at 100,000 contracts, against ~0.6 KB here. `Contract.parse` does both steps.

`as_data` gives what pydantic's `model_dump(mode="json")` of the spec gives (tests
hold them equal), and `from_data` builds a contract back from it without validating
again: for data Baton wrote itself from a validated contract (snapshot.py), under the
same spec (`spec_digest`).
"""

from __future__ import annotations

import hashlib
import marshal
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import MISSING, dataclass, fields
from datetime import timedelta
from functools import cache, lru_cache
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, TypeAdapter
from pydantic_core import to_jsonable_python

from broker.contracts import spec
from broker.contracts.spec import DEADLINE, TRIGGER_KINDS, RetryOverride, contract_json_schema
from broker.core.partitions import Calendar, Granularity

__all__ = [
    "DEADLINE",
    "TRIGGER_KINDS",
    "AllOf",
    "AnyOf",
    "Condition",
    "Contract",
    "Input",
    "RetryOverride",
    "Trigger",
    "contract_calendar",
    "contract_json_schema",
    "input_calendar",
    "iter_inputs",
    "trigger_spec",
]

_DURATION: TypeAdapter[timedelta] = TypeAdapter(timedelta)


class _Data:
    """`as_data` over a dataclass's fields, as pydantic dumps a model in JSON mode."""

    __slots__ = ()
    _defaults: ClassVar[tuple[tuple[str, Any], ...]] = ()

    def as_data(
        self, *, exclude_defaults: bool = False, exclude_none: bool = False
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, default in self._defaults:
            value = getattr(self, name)
            if (exclude_none and value is None) or (exclude_defaults and value == default):
                continue
            out[name] = _jsonable(value, exclude_defaults, exclude_none)
        return out


_NO_DEFAULT = object()
_C = TypeVar("_C", bound=type[_Data])


def _dumped_as(model: type[BaseModel]) -> Callable[[_C], _C]:
    """Each field with its default, in the order `model` (its spec) dumps them."""

    def decorate(cls: _C) -> _C:
        defaults = {f.name: _NO_DEFAULT if f.default is MISSING else f.default
                    for f in fields(cls)}  # type: ignore[arg-type]  # fmt: skip
        assert defaults.keys() == model.model_fields.keys(), cls
        cls._defaults = tuple((name, defaults[name]) for name in model.model_fields)
        return cls

    return decorate


def _jsonable(value: Any, exclude_defaults: bool, exclude_none: bool) -> Any:
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:  # most of them
        return value
    if kind is Granularity:
        return value.value
    if isinstance(value, _Data | Trigger):
        return value.as_data(exclude_defaults=exclude_defaults, exclude_none=exclude_none)
    if isinstance(value, tuple):
        return [_jsonable(v, exclude_defaults, exclude_none) for v in value]
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_defaults=exclude_defaults,
                                exclude_none=exclude_none)  # fmt: skip
    return to_jsonable_python(value)


@_dumped_as(spec.Input)
@dataclass(frozen=True, slots=True)
class Input(_Data):
    """One dataset the contract waits for, with its own granularity, offset and filter."""

    dataset: str
    partitioned: Granularity | None = None
    offset: int = 0
    where: str | None = None

    def granularity(self, contract: Contract) -> Granularity:
        return self.partitioned or contract.partitioned


@_dumped_as(spec.AllOf)
@dataclass(frozen=True, slots=True)
class AllOf(_Data):
    all_of: tuple[Condition, ...]


@_dumped_as(spec.AnyOf)
@dataclass(frozen=True, slots=True)
class AnyOf(_Data):
    any_of: tuple[Condition, ...]


Condition = Input | AllOf | AnyOf


@dataclass(frozen=True, slots=True)
class Trigger:
    """`target` plus the fields of its kind, as written; see `trigger_spec`."""

    target: str
    extra: Mapping[str, Any]

    def fields(self) -> dict[str, Any]:
        return dict(self.extra)

    def as_data(
        self, *, exclude_defaults: bool = False, exclude_none: bool = False
    ) -> dict[str, Any]:
        out: dict[str, Any] = {"target": self.target}
        for name, value in self.extra.items():
            if not (exclude_none and value is None):
                out[name] = to_jsonable_python(value)
        return out


@_dumped_as(spec.Contract)
@dataclass(frozen=True, slots=True)
class Contract(_Data):
    """When `when` holds for partition P, start `trigger`; alert if not by `deadline`."""

    name: str
    when: Condition
    trigger: Trigger
    description: str = ""
    owner: str | None = None
    partitioned: Granularity = Granularity.NONE
    timezone: str = "UTC"
    partitions: tuple[str, ...] | None = None
    within: timedelta | None = None
    deadline: str | None = None
    on_deadline: Literal["alert", "trigger"] = "alert"
    on_restatement: Literal["retrigger", "ignore"] = "retrigger"
    produces: tuple[str, ...] = ()
    retry: RetryOverride | None = None

    @classmethod
    def parse(cls, data: Any) -> Contract:
        """`data` validated (raises pydantic's ValidationError) and kept in this form."""
        return cls.of(spec.Contract.model_validate(data))

    @classmethod
    def of(cls, valid: spec.Contract) -> Contract:
        """The validated contract `valid` in this form."""
        trigger = Trigger(valid.trigger.target, _alike(valid.trigger.model_extra or {}))
        return cls(
            valid.name, _condition(valid.when), trigger, valid.description, valid.owner,
            valid.partitioned, valid.timezone,
            None if valid.partitions is None else tuple(valid.partitions), valid.within,
            valid.deadline, valid.on_deadline, valid.on_restatement, valid.produces, valid.retry,
        )  # fmt: skip

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Contract:
        """A contract back from what its `as_data` gave, not validated again (see the
        module docstring); raises KeyError, TypeError or ValueError on data of another
        shape."""
        within, retry, partitions = data.get("within"), data.get("retry"), data.get("partitions")
        trigger = dict(data["trigger"])
        target = trigger.pop("target")
        if not isinstance(target, str) or not isinstance(data["name"], str):
            raise TypeError("a contract's name and target are text")
        return cls(
            data["name"], _condition_from(data["when"]), Trigger(target, _alike(trigger)),
            data.get("description", ""), data.get("owner"),
            _GRAINS[data.get("partitioned", "none")], data.get("timezone", "UTC"),
            None if partitions is None else tuple(partitions),
            None if within is None else _DURATION.validate_python(within),
            data.get("deadline"), data.get("on_deadline", "alert"),
            data.get("on_restatement", "retrigger"), tuple(data.get("produces", ())),
            None if retry is None else _retry_from(retry),
        )  # fmt: skip

    def inputs(self) -> list[Input]:
        return list(iter_inputs(self.when))

    def input_datasets(self) -> set[str]:
        return {i.dataset for i in iter_inputs(self.when)}


def _condition(node: spec.Condition) -> Condition:
    kind = type(node)
    if kind is spec.Input:
        item: spec.Input = node  # type: ignore[assignment]
        return _input(item.dataset, item.partitioned, item.offset, item.where)
    if kind is spec.AllOf:
        return AllOf(tuple(map(_condition, node.all_of)))  # type: ignore[union-attr]
    return AnyOf(tuple(map(_condition, node.any_of)))  # type: ignore[union-attr]


def _condition_from(data: Mapping[str, Any]) -> Condition:
    if "all_of" in data:
        return AllOf(tuple(map(_condition_from, data["all_of"])))
    if "any_of" in data:
        return AnyOf(tuple(map(_condition_from, data["any_of"])))
    partitioned = data.get("partitioned")
    return _input(data["dataset"], None if partitioned is None else _GRAINS[partitioned],
                  int(data.get("offset", 0)), data.get("where"))  # fmt: skip


_GRAINS = {g.value: g for g in Granularity}  # a lookup: Granularity(v) is ~0.7 us


def _input(dataset: str, partitioned: Granularity | None, offset: int, where: str | None) -> Input:
    """An input, or while a set loads (`alike`) the equal one made before: contracts
    read the same datasets the same way (100,000 contracts of 3 inputs, 2 of them read
    by 1,000 contracts each: 200,000 objects fewer, ~13 MiB)."""
    key = (dataset, partitioned, offset, where)
    seen = _Alike.inputs
    if seen is None:
        return Input(*key)
    found = seen.get(key)
    if found is None:
        found = seen[key] = Input(*key)
    return found


class _Alike:
    """While a set loads (`alike`): the trigger fields (and the values within them) seen
    so far, by a hash of what they marshal to, and the inputs (`_input`). Contracts made
    from one template share their trigger's fields, body and all (100,000 alike: ~37
    MiB); nothing changes them."""

    seen: dict[int, Any] | None = None
    inputs: dict[tuple[str, Granularity | None, int, str | None], Input] | None = None


@contextmanager
def alike() -> Iterator[None]:
    """Contracts made meanwhile share the trigger fields they have alike, and the values
    within them, and the inputs they have alike (`_input`); the tables of what was seen
    are let go at the end (a load nested in another, or in another thread meanwhile,
    shares the outer one's)."""
    outer = _Alike.seen
    if outer is None:
        _Alike.seen, _Alike.inputs = {}, {}
    try:
        yield
    finally:
        if outer is None:
            _Alike.seen = _Alike.inputs = None


def _alike(value: Any) -> Any:
    """`value`, or an equal one seen before in this load (`alike`): the same types, the
    same order, so that it renders the same; the lists and dicts within it first."""
    seen = _Alike.seen
    kind = type(value)
    if seen is None or (kind is not dict and kind is not list):
        return value
    items = value.items() if kind is dict else enumerate(value)
    for key, item in items:
        if type(item) is dict or type(item) is list:
            value[key] = _alike(item)  # a value replaced in place: the sizes stay
    try:
        form = marshal.dumps(value, 2)  # a type code for each value: 1, 1.0 and True differ
    except ValueError:  # a date from YAML, say: kept as it is
        return value
    found = seen.setdefault(hash(form), value)
    if found is not value and marshal.dumps(found, 2) != form:  # another value, same hash
        return value
    return found


def _retry_from(data: Mapping[str, Any]) -> RetryOverride:
    """A retry override back from its JSON: its durations as pydantic wrote them (ISO
    8601, which `Duration` as people write it does not take), its numbers as they are."""
    return RetryOverride.model_validate(
        {k: _DURATION.validate_python(v) if isinstance(v, str) else v for k, v in data.items()}
    )


@cache
def spec_digest() -> bytes:
    """A digest of the contract format: data `as_data` gave under another is not read
    back by `from_data`."""
    return hashlib.blake2b(repr(contract_json_schema()).encode(), digest_size=16).digest()


def iter_inputs(condition: Condition) -> Iterator[Input]:
    """Every Input of a condition tree, depth first (without a generator per node: a
    start over 100,000 contracts walks every tree)."""
    found: list[Input] = []
    stack: list[Condition] = [condition]
    while stack:
        node = stack.pop()
        if type(node) is Input:
            found.append(node)
        else:
            children = node.all_of if type(node) is AllOf else node.any_of  # type: ignore[union-attr]
            stack += reversed(children)
    return iter(found)


def trigger_spec(contract: Contract, kind: str) -> BaseModel:
    """The trigger validated against its target's kind; raises pydantic's ValidationError."""
    model = TRIGGER_KINDS[kind]
    return model.model_validate({"target": contract.trigger.target, **contract.trigger.fields()})


def input_calendar(contract: Contract, item: Input) -> Calendar:
    """The calendar an input's partitions are keyed in (its own, or the contract's)."""
    return _calendar(item.partitioned or contract.partitioned, contract.timezone)


def contract_calendar(contract: Contract) -> Calendar:
    return _calendar(contract.partitioned, contract.timezone)


@lru_cache(maxsize=4096)
def _calendar(granularity: Granularity, timezone: str) -> Calendar:
    """One calendar object per (granularity, timezone): the index holds two for each of
    the 300,000 inputs of 100,000 contracts."""
    return Calendar(Granularity(granularity), timezone)
