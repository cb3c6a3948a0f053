"""Load contract files: every *.yaml/*.yml under a folder, one or more documents each.

YAML is composed into nodes first, so every key and list item keeps its line; a
validation error's path is mapped back to the line that holds the offending value.

Nothing a folder holds may crash, hang or exhaust the process that loads it. Each of
`LoadLimits` is refused with a `file:line:` error that names it, and so are duplicate
keys, scalars their tag cannot construct, files that are not UTF-8 or cannot be read,
and anything named *.yaml that is not a regular file. A file is opened only once `stat`
says it is a regular file small enough, so a FIFO never blocks and a huge file is never
read. Folders are walked with a stack and symlinked folders are not entered (as
`Path.rglob` did), so neither a deep tree nor a symlink loop can recurse.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from broker.contracts.model import Contract
from broker.core.errors import ContractError, Location

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class LoadLimits:
    """What loading one contracts folder may cost; each far above any real folder."""

    max_file_bytes: int = 1 << 20  # a hand-written contract file is a few KB
    max_folder_bytes: int = 64 << 20  # all files together: the text held, the time to parse
    max_contracts: int = 50_000  # documents, and files, per folder: 5x the reload benchmark
    max_values: int = 100_000  # per document, every use of a YAML alias counted again
    max_folder_values: int = 2_000_000  # a loaded value holds ~200 bytes (value and line)
    # Nested mappings and lists. Everything that walks a contract recurses once or twice
    # per level (the loader, pydantic, the checks, the matcher), within Python's ~1000.
    max_depth: int = 64

    def __post_init__(self) -> None:
        if not 1 <= self.max_depth <= 200:
            raise ValueError("max_depth must be 1 to 200, within Python's recursion limit")


DEFAULT_LIMITS = LoadLimits()


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


@dataclass
class _Spent:
    """What loading one folder has used so far of its limits."""

    limits: LoadLimits
    bytes: int = 0
    contracts: int = 0
    values: int = 0
    full: bool = False  # a folder-wide limit was reached: nothing more is loaded

    def over(self, name: str, what: str) -> str:
        return f"over the limit of {getattr(self.limits, name)} {what} ({name})"


# libyaml's loader when PyYAML was built with it: the same nodes and marks, ~10x faster.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_contracts(
    folder: Path, limits: LoadLimits = DEFAULT_LIMITS
) -> tuple[ContractSet, list[ContractError]]:
    """Load every contract file under `folder`; collect all errors and keep going, up to
    a folder-wide limit."""
    if not folder.is_dir():
        error = ContractError(Location(str(folder)), "no such contracts folder")
        return ContractSet((), _version([])), [error]
    spent = _Spent(limits)
    files, errors = contract_files(folder, spent)
    loaded: list[LoadedContract] = []
    texts: list[tuple[str, str]] = []
    for path in files:
        try:
            text = _read(path, spent)
        except ContractError as exc:
            errors.append(exc)
            text = None
        if text is not None:
            texts.append((str(path.relative_to(folder)), text))
            good, bad = load_text(text, str(path), limits, spent)
            loaded += good
            errors += bad
        if spent.full:
            break
    return ContractSet(tuple(loaded), git_version(folder, _version(texts))), errors


def contract_files(folder: Path, spent: _Spent) -> tuple[list[Path], list[ContractError]]:
    """Every *.yaml and *.yml under `folder`, sorted; none and an error past the limit."""
    found: list[Path] = []
    pending = [folder]
    while pending:
        for entry in _entries(pending.pop()):
            if _is_folder(entry):
                pending.append(Path(entry.path))
            elif os.path.splitext(entry.name)[1] in (".yaml", ".yml"):
                found.append(Path(entry.path))
        if len(found) > spent.limits.max_contracts:
            over = Location(str(sorted(found)[spent.limits.max_contracts]), 1)
            return [], [ContractError(over, spent.over("max_contracts", "contract files"))]
    return sorted(found), []


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except OSError:  # gone since listed, or unreadable (a lost+found): skipped, as by rglob
        return []


def _is_folder(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


# O_NONBLOCK: a file swapped for a FIFO between its stat and its open must not block.
_OPEN = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_KINDS = {stat.S_IFIFO: "FIFO", stat.S_IFSOCK: "socket", stat.S_IFCHR: "character device",
          stat.S_IFBLK: "block device"}  # fmt: skip


def _read(path: Path, spent: _Spent) -> str | None:
    """The text of a contract file; None for a folder or no file (any more: one removed
    meanwhile, or a dangling symlink such as an editor's lock file)."""
    where = Location(str(path), 1)
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            return None
        _admit(info, where, spent)
        with os.fdopen(os.open(path, _OPEN), "rb") as handle:
            # What stat said, not the limit: a buffer of the limit's size costs ~20 us a file.
            data = handle.read(info.st_size + 1)
            if len(data) > info.st_size:  # it grew since: up to one byte past the limit
                data += handle.read(spent.limits.max_file_bytes + 1 - len(data))
    except FileNotFoundError:
        return None
    except OSError as exc:  # unreadable, a symlink loop, an I/O error
        raise ContractError(where, f"cannot be read: {exc.strerror or exc}") from None
    if len(data) > spent.limits.max_file_bytes:
        raise ContractError(where, f"the file grew {spent.over('max_file_bytes', 'bytes')}")
    return _decode(data, str(path))


def _admit(info: os.stat_result, where: Location, spent: _Spent) -> None:
    """Refuse a file by its stat alone: before it is opened, let alone read."""
    if not stat.S_ISREG(info.st_mode):
        kind = _KINDS.get(stat.S_IFMT(info.st_mode), "special file")
        raise ContractError(where, f"not a regular file but a {kind}")
    if info.st_size > spent.limits.max_file_bytes:
        over = spent.over("max_file_bytes", "bytes per file")
        raise ContractError(where, f"the file is {info.st_size} bytes, {over}")
    spent.bytes += info.st_size
    if spent.bytes > spent.limits.max_folder_bytes:
        spent.full = True
        raise ContractError(where, spent.over("max_folder_bytes", "bytes per folder"))


def _decode(data: bytes, file: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:  # named, not replaced: a replaced byte loads silently
        line = data.count(b"\n", 0, exc.start) + 1
        message = f"not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}"
        raise ContractError(Location(file, line), message) from None


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


def load_text(
    text: str, file: str, limits: LoadLimits = DEFAULT_LIMITS, spent: _Spent | None = None
) -> tuple[list[LoadedContract], list[ContractError]]:
    """The contracts in one file's text; `spent` carries a folder's totals from file to file."""
    spent = spent or _Spent(limits)
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


def _compose(text: str, file: str, spent: _Spent) -> list[yaml.Node | None]:
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


def _check_depth(text: str, file: str, spent: _Spent) -> None:
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


def _too_deep(file: str, line: int, spent: _Spent) -> ContractError:
    return ContractError(Location(file, line), spent.over("max_depth", "levels of nesting"))


def _load_document(
    node: yaml.Node, file: str, spent: _Spent
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
        contract = Contract.model_validate(data)
    except ValidationError as exc:
        return [_error(err, data, lines, start) for err in exc.errors()]
    name_line = lines.get(("name",), start.line)
    return LoadedContract(contract, Location(file, name_line), lines)


class _Builder:
    """One composed document as plain data, each path's line noted, within the limits.

    An alias is the node it names, visited again: its values are counted at each use
    (which is where an alias bomb explodes) and nest as deep as where it is used."""

    def __init__(self, file: str, spent: _Spent, lines: dict[Path_, int]) -> None:
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
            key = key_node.value if key_node.tag == _STR else self._scalar(key_node)
            if key in out:
                first = self.lines[(*path, key)]
                raise self._at(key_node, f"duplicate key {key!r}, first at line {first}")
            out[key] = self.data(value_node, (*path, key), depth)
            self.lines[(*path, key)] = key_node.start_mark.line + 1
        return out

    def _scalar(self, node: yaml.Node) -> Any:
        """A scalar node's value, resolved by YAML's safe rules (int, bool, null, ...)."""
        if node.tag == _STR:
            return node.value
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


def _version(texts: list[tuple[str, str]]) -> str:
    digest = hashlib.sha256()
    for name, text in sorted(texts):
        digest.update(name.encode() + b"\0" + text.encode() + b"\0")
    return digest.hexdigest()[:12]
