"""Load contract files: every *.yaml/*.yml under a folder, one or more documents each.

YAML is composed into nodes first, so every key and list item keeps its line; a
validation error's path is mapped back to the line that holds the offending value.
The files are found and read within `LoadLimits` by broker/contracts/files.py; here the
limits on what a document holds (its values, aliases counted at each use, and its
nesting) are refused with a `file:line:` error that names them, and so are duplicate
keys and scalars their tag cannot construct.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import yaml
from pydantic import ValidationError

from broker.contracts.files import (
    DEFAULT_LIMITS,
    LoadLimits,
    Spent,
)
from broker.contracts.model import Contract
from broker.core.errors import ContractError, Location

Path_ = tuple[str | int, ...]


# The line map of a contract kept once checked: none (one object for all of them).
NO_LINES: Mapping[Path_, int] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class LoadedContract:
    """A contract and where it is: its file and the line of its name (kept apart, not as
    a Location, which would be one more object for each of 100,000)."""

    contract: Contract
    file: str
    line: int
    lines: Mapping[Path_, int] = field(default_factory=lambda: NO_LINES, compare=False,
                                       repr=False)  # fmt: skip

    @property
    def location(self) -> Location:
        return Location(self.file, self.line)

    def at(self, *path: str | int) -> Location:
        """The location of a field of this contract (its nearest known ancestor's line)."""
        for end in range(len(path), 0, -1):
            if path[:end] in self.lines:
                return Location(self.file, self.lines[path[:end]])
        return self.location


@dataclass(frozen=True)
class ContractSet:
    contracts: tuple[LoadedContract, ...]
    version: str
    content: str = ""  # the hash of the files' names and texts (`version` outside Git)

    def by_name(self) -> dict[str, Contract]:
        return {c.contract.name: c.contract for c in self.contracts}


# libyaml's loader when PyYAML was built with it: the same nodes and marks, ~10x faster.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_text(
    text: str, file: str, limits: LoadLimits = DEFAULT_LIMITS, spent: Spent | None = None
) -> tuple[list[LoadedContract], list[ContractError]]:
    """The contracts in one file's text; `spent` carries a folder's totals from file to file."""
    spent = spent or Spent(limits)
    try:
        documents = _compose(text, file, spent)
    except ContractError as exc:
        return [], [exc]
    loaded, errors = [], []
    for node in (n for n in documents if n is not None):
        result = _load_document(node, file, spent)
        if isinstance(result, LoadedContract):
            loaded.append(result)
        else:
            errors += result
        if spent.full:
            break
    return loaded, errors


def _compose(text: str, file: str, spent: Spent) -> list[yaml.Node | None]:
    try:
        _check_depth(text, file, spent)
        return list(yaml.compose_all(text, Loader=_LOADER))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)  # a reader error knows its position only
        at = (
            _line(mark)
            if mark is not None
            else text.count("\n", 0, getattr(exc, "position", 0)) + 1
        )
        problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or str(exc)
        if problem == "exceeded maximum nesting depth":  # libyaml scans ahead of its events
            raise _too_deep(file, at, spent) from None
        raise ContractError(Location(file, at), f"not valid YAML: {problem}") from None


# Each level of nesting opens with one of these: "-" a block sequence, ":" or "?" a
# block mapping, "[" or "{" a flow collection.
_OPENERS = "-:?[{"


def _check_depth(text: str, file: str, spent: Spent) -> None:
    """Refuse nesting past `max_depth` before the composer sees it: it recurses once per
    level, in Python without libyaml, and in C with it (stopped at 1000 levels by the
    libyaml 0.2.6 in PyYAML's wheels, not by every older one). A text with few openers
    cannot nest deep, and is not parsed twice."""
    if sum(map(text.count, _OPENERS)) <= spent.limits.max_depth:
        return
    depth = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > spent.limits.max_depth:
                raise _too_deep(file, _line(event.start_mark), spent)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _line(mark: Any) -> int:
    return int(mark.line) + 1


def _too_deep(file: str, line: int, spent: Spent) -> ContractError:
    return ContractError(Location(file, line), spent.over("max_depth", "levels of nesting"))


def _load_document(
    node: yaml.Node, file: str, spent: Spent
) -> LoadedContract | list[ContractError]:
    start = Location(file, _line(node.start_mark))
    spent.contracts += 1
    if spent.contracts > spent.limits.max_contracts:
        spent.full = True
        return [ContractError(start, spent.over("max_contracts", "contracts per folder"))]
    lines: dict[Path_, int] = {}
    try:
        data = _Builder(file, spent, lines).document(node)
    except ContractError as exc:
        return [exc]
    if not isinstance(data, dict):
        return [ContractError(start, "a contract must be a mapping with name, when and trigger")]
    try:
        contract = Contract.parse(data)
    except ValidationError as exc:
        return [_error(err, data, lines, start) for err in exc.errors()]
    name_line = lines.get(("name",), start.line)
    return LoadedContract(contract, file, name_line, lines)


class _Builder:
    """One composed document as plain data, each path's line noted, within the limits.

    An alias is the node it names, visited again: its values are counted at each use
    (which is where an alias bomb explodes) and nest as deep as where it is used."""

    def __init__(self, file: str, spent: Spent, lines: dict[Path_, int]) -> None:
        self.file, self.spent, self.lines = file, spent, lines
        self.max_depth = spent.limits.max_depth
        self.values = 0
        # The document's own limit, or what is left of the folder's when that is less.
        self.cap = min(spent.limits.max_values, spent.limits.max_folder_values - spent.values)
        self.constructor = yaml.constructor.SafeConstructor()

    def document(self, node: yaml.Node) -> Any:
        try:
            return self.data(node, (), 0)
        finally:
            self.spent.values += self.values

    def data(self, node: yaml.Node, path: Path_, depth: int) -> Any:
        self.values += 1
        if self.values > self.cap:
            raise self._too_many(node)
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, self._deeper(node, depth))
        if isinstance(node, yaml.SequenceNode):
            depth = self._deeper(node, depth)
            return [self.data(item, (*path, i), depth) for i, item in enumerate(node.value)]
        return self._scalar(node)

    def _mapping(self, node: yaml.MappingNode, path: Path_, depth: int) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise self._at(
                    key_node, "a mapping key must be a plain value, not a mapping or list"
                )
            key = sys.intern(key_node.value) if key_node.tag == _STR else self._scalar(key_node)
            if key in out:
                first = self.lines[(*path, key)]
                raise self._at(key_node, f"duplicate key {key!r}, first at line {first}")
            out[key] = self.data(value_node, (*path, key), depth)
            self.lines[(*path, key)] = key_node.start_mark.line + 1
        return out

    def _scalar(self, node: yaml.Node) -> Any:
        """A scalar node's value, resolved by YAML's safe rules (int, bool, null, ...)."""
        if node.tag == _STR:  # one object per text: contracts repeat datasets, targets,
            return sys.intern(node.value)  # templates (~280 B a contract, of 4.4 KB)
        try:
            return self.constructor.construct_object(node)
        except (yaml.YAMLError, ValueError, TypeError, KeyError, AttributeError) as exc:
            # `2026-02-30` read as a date, `!!int x`: constructors raise all of these
            kind = str(node.tag).rsplit(":", 1)[-1]
            problem = getattr(exc, "problem", None) or exc
            raise self._at(
                node, f"not valid YAML: {node.value!r} is no {kind}: {problem}"
            ) from None

    def _deeper(self, node: yaml.Node, depth: int) -> int:
        if depth >= self.max_depth:
            raise _too_deep(self.file, _line(node.start_mark), self.spent)
        return depth + 1

    def _too_many(self, node: yaml.Node) -> ContractError:
        if self.cap < self.spent.limits.max_values:
            self.spent.full = True
            return self._at(node, self.spent.over("max_folder_values", "values per folder"))
        what = "values per document, each use of an alias counted"
        return self._at(node, self.spent.over("max_values", what))

    def _at(self, node: yaml.Node, message: str) -> ContractError:
        return ContractError(Location(self.file, _line(node.start_mark)), message)


_STR = "tag:yaml.org,2002:str"


def _error(err: Any, data: Any, lines: Mapping[Path_, int], start: Location) -> ContractError:
    path = data_path(err["loc"], data)
    line = next((lines[path[:n]] for n in range(len(path), 0, -1) if path[:n] in lines), start.line)
    return ContractError(
        Location(start.file, line), f"{dotted(path) or 'contract'}: {_message(err)}"
    )


def data_path(loc: tuple[Any, ...], data: Any) -> Path_:
    """The part of a pydantic error location that names real keys and indexes in `data`."""
    path: list[str | int] = []
    current = data
    for part in loc:
        if _has(current, part):
            current = current[part]
        elif (
            isinstance(current, dict)
            and isinstance(part, str)
            and part not in ("input", "all_of", "any_of")
        ):
            path.append(part)  # a missing or unknown key: name it anyway
            break
        else:
            continue
        path.append(part)
    return tuple(path)


def _has(container: Any, part: Any) -> bool:
    if isinstance(container, dict):
        return part in container
    return isinstance(container, list) and isinstance(part, int) and part < len(container)


def dotted(path: Path_) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.lstrip(".")


def _message(err: Any) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown field"
    message = str(err["msg"])
    return message.removeprefix("Value error, ")
