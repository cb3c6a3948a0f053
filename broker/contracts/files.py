"""Find and read the contract files of a folder, within what loading it may cost.

Nothing a folder holds may crash, hang or exhaust the process that loads it. Each of
`LoadLimits` is refused with a `file:line:` error that names it, and so are files that
are not UTF-8 or cannot be read, and anything named *.yaml that is not a regular file.
A file is opened only once `stat` says it is a regular file small enough, so a FIFO
never blocks and a huge file is never read. Folders are walked with a stack and
symlinked folders are not entered (as `Path.rglob` did), so neither a deep tree nor a
symlink loop can recurse. `Spent` carries what a folder has used so far of its limits,
from file to file and into the YAML documents (broker/contracts/loader.py).

What the files hold is named by a version: the Git commit when the folder is in a Git
work tree, else a hash of their content.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from broker.core.errors import ContractError, Location


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


@dataclass
class Spent:
    """What loading one folder has used so far of its limits."""

    limits: LoadLimits
    bytes: int = 0
    contracts: int = 0
    values: int = 0
    full: bool = False  # a folder-wide limit was reached: nothing more is loaded

    def over(self, name: str, what: str) -> str:
        return f"over the limit of {getattr(self.limits, name)} {what} ({name})"


def contract_files(folder: Path, spent: Spent) -> tuple[list[str], list[ContractError]]:
    """Every *.yaml and *.yml under `folder`, in the order of their paths' parts (each
    folder's entries by name, a subfolder's files where its name falls); none and an
    error past the limit. Kept as text: 100,000 Path objects, and sorting them by Path's
    own comparison, cost a reload a second and a half."""
    found: list[str] = []
    pending = [str(folder)]
    while pending:
        entries = sorted(_entries(pending.pop()), key=lambda e: e.name, reverse=True)
        for entry in entries:  # reversed, as a stack gives them back last first
            if _is_folder(entry):
                pending.append(entry.path)
            elif is_contract_file(entry.name):
                pending.append(_FILE + entry.path)
        while pending and pending[-1].startswith(_FILE):
            found.append(pending.pop()[1:])
        if len(found) > spent.limits.max_contracts:
            over = Location(found[spent.limits.max_contracts], 1)
            return [], [ContractError(over, spent.over("max_contracts", "contract files"))]
    return found, []


_FILE = "\0"  # marks a file among the folders still to list: no path holds a NUL


def is_contract_file(path: str) -> bool:
    return path.endswith((".yaml", ".yml"))


def listing_order(path: str) -> list[str]:
    """Where a path falls in `contract_files`' order: by its parts."""
    return path.split(os.sep)


def _entries(folder: str) -> list[os.DirEntry[str]]:
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


def read_file(path: str, spent: Spent) -> tuple[str, os.stat_result] | None:
    """The text of a contract file, and what stat said of it just before it was read;
    None for a folder or no file (any more: one removed meanwhile, or a dangling symlink
    such as an editor's lock file)."""
    where = Location(path, 1)
    try:
        info = os.stat(path)
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
    return _decode(data, path), info


def _admit(info: os.stat_result, where: Location, spent: Spent) -> None:
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


def content_version(entries: list[bytes]) -> str:
    """A hash of each file's `version_entry`, in order (the caller sorts them): the
    version outside Git."""
    return hashlib.sha256(b"".join(entries)).hexdigest()[:12]


def version_entry(name: str, text_digest: bytes) -> bytes:
    """A file's part of the version: its name within the folder and the digest of its
    text. Sorted as bytes, entries fall in the order of their names (UTF-8 keeps the
    order of code points, and the NUL sorts a name before any name it begins)."""
    return name.encode() + b"\0" + text_digest
