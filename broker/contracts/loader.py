"""Load contract files: every *.yaml/*.yml under a folder, one or more documents each.

YAML is composed into nodes first, so every key and list item keeps its line; a
validation error's path is mapped back to the line that holds the offending value.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from broker.contracts.model import Contract
from broker.errors import ContractError, Location

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class LoadedContract:
    contract: Contract
    location: Location
    lines: Mapping[Path_, int] = field(default_factory=dict, compare=False, repr=False)

    def at(self, *path: str | int) -> Location:
        """The location of a field of this contract (its nearest known ancestor's line)."""
        for end in range(len(path), 0, -1):
            if path[:end] in self.lines:
                return Location(self.location.file, self.lines[path[:end]])
        return self.location


@dataclass(frozen=True)
class ContractSet:
    contracts: tuple[LoadedContract, ...]
    version: str

    def by_name(self) -> dict[str, Contract]:
        return {c.contract.name: c.contract for c in self.contracts}


# libyaml's loader when PyYAML was built with it: the same nodes and marks, ~10x faster.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_contracts(folder: Path) -> tuple[ContractSet, list[ContractError]]:
    """Load every contract file under `folder`; collect all errors and keep going."""
    if not folder.is_dir():
        error = ContractError(Location(str(folder)), "no such contracts folder")
        return ContractSet((), _version([])), [error]
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    loaded: list[LoadedContract] = []
    errors: list[ContractError] = []
    texts: list[tuple[str, str]] = []
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        texts.append((str(path.relative_to(folder)), text))
        good, bad = load_text(text, str(path))
        loaded += good
        errors += bad
    return ContractSet(tuple(loaded), git_version(folder, _version(texts))), errors


def git_version(folder: Path, content: str) -> str:
    """The Git commit when `folder` is in a Git work tree (`<commit>`, or with local
    changes under it `<commit>-dirty-<content hash>`), else the content hash."""
    try:
        head = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        )  # fmt: skip
        if head.returncode != 0:
            return content
        dirty = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--", "."],
            capture_output=True, text=True, timeout=5, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):  # no git on this machine
        return content
    commit = head.stdout.strip()
    return f"{commit}-dirty-{content[:8]}" if dirty.stdout.strip() else commit


def load_text(text: str, file: str) -> tuple[list[LoadedContract], list[ContractError]]:
    try:
        documents = list(yaml.compose_all(text, Loader=_LOADER))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        problem = getattr(exc, "problem", None) or str(exc)
        return [], [ContractError(Location(file, line), f"not valid YAML: {problem}")]
    loaded, errors = [], []
    for node in documents:
        if node is None:
            continue
        result = _load_document(node, file)
        if isinstance(result, LoadedContract):
            loaded.append(result)
        else:
            errors += result
    return loaded, errors


def _load_document(node: yaml.Node, file: str) -> LoadedContract | list[ContractError]:
    start = Location(file, node.start_mark.line + 1)
    lines: dict[Path_, int] = {}
    try:
        data = _to_data(node, (), lines)
    except yaml.YAMLError as exc:
        return [ContractError(start, f"not valid YAML: {exc}")]
    if not isinstance(data, dict):
        return [ContractError(start, "a contract must be a mapping with name, when and trigger")]
    try:
        contract = Contract.model_validate(data)
    except ValidationError as exc:
        return [_error(err, data, lines, start) for err in exc.errors()]
    name_line = lines.get(("name",), start.line)
    return LoadedContract(contract, Location(file, name_line), lines)


def _to_data(node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            out[key] = _to_data(value_node, (*path, key), lines)
            lines[(*path, key)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_data(item, (*path, i), lines) for i, item in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    """A scalar node's value, resolved by YAML's safe rules (int, bool, null, ...)."""
    return yaml.SafeLoader("").construct_object(node) if node.tag != _STR else node.value


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


def _version(texts: list[tuple[str, str]]) -> str:
    digest = hashlib.sha256()
    for name, text in sorted(texts):
        digest.update(name.encode() + b"\0" + text.encode() + b"\0")
    return digest.hexdigest()[:12]
