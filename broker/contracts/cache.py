"""What each contract file loaded to when a set last loaded cleanly, so that a reload
parses and checks again only the files that changed.

A file is known by its path and a digest of its text, and by what `stat` said just
before it was read. A file whose stat is the same (size, mtime, ctime, inode) is not read
again; one that was written within `RACY_S` of that stat is read again regardless (a
second write in the same clock tick could keep the size and the times), and a read file
whose digest is the same is not composed, validated or rendered again. What it loaded
to is kept as the running set keeps it, without its line map. A file that failed is
never kept: its errors are found afresh each time.

The checks of one contract (its trigger's templates, its inputs, its owner, the
environment variables it reads) are not run again for a kept contract while what they
depend on (`key`: the targets, owners, limits, allowed variables and the environment)
is the same; a different key forgets every file. The checks across the set (names used
twice, cycles) always run on the whole set.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import stat as stat_kinds
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from broker.contracts.files import is_contract_file, listing_order

if TYPE_CHECKING:
    from broker.contracts.files import Spent
    from broker.contracts.loader import LoadedContract


RACY_S = 2.0

# A hash of (device, inode, size, mtime ns, ctime ns): one int a file rather than a tuple
# of five (100,000 files: ~20 MiB less).
Stat = int


def digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def stat_of(info: os.stat_result) -> Stat | None:
    """What to keep of a file's stat, taken just before it was read; None for a file
    changed too lately to be told apart from a write yet to come in the same tick."""
    racy = time.time_ns() - int(RACY_S * 1e9)
    if info.st_mtime_ns > racy or info.st_ctime_ns > racy:
        return None
    key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    return hash(key)


@dataclass(frozen=True, slots=True)
class Kept:
    digest: bytes
    contracts: tuple[LoadedContract, ...]
    values: int  # what its documents spent of the folder's `max_folder_values`
    stat: Stat | None  # taken before it was read (None: read it again next time)
    size: int  # its bytes, as read


@dataclass(frozen=True, slots=True)
class AllBut:
    """The ids of a patched load's reused contracts: all of them but the few parsed
    anew (a set of 100,000 ids would cost 50 ms to make)."""

    fresh: frozenset[int]

    def __contains__(self, item: object) -> bool:
        return item not in self.fresh


@dataclass(frozen=True, slots=True)
class LastLoad:
    """A clean load as the next one may patch it (folder.py: `_patched`): its contracts
    in listing order, as the running set keeps them; each file's first index among them;
    the version entry of each file (files.py), sorted; and what the folder spent of its
    limits (bytes, contracts, values)."""

    contracts: tuple[LoadedContract, ...]
    starts: dict[str, int]
    versions: list[bytes]
    spent: tuple[int, int, int]
    racy: frozenset[str]  # files kept without a stat: read again, named or not


@dataclass
class FileCache:
    key: object = None
    files: dict[str, Kept] = field(default_factory=dict)
    last: LastLoad | None = None
    # the load in progress: ids of the kept contracts it reused (let go once it commits:
    # 100,000 ids are ~7 MiB), and every file it read
    reused: set[int] | AllBut = field(default_factory=set)
    # how many contracts the last committed load reused rather than parsed and checked
    reused_count: int = 0
    # paths a watcher saw change since the last load (`hint`), and of them the contract
    # files this load lists from the last one's instead of the folder
    changed: set[str] | None = None
    _told: set[str] = field(default_factory=set)
    # each file read by this load: what it read, or (not read again) what is kept of it
    _seen: dict[str, tuple[bytes, int, Stat | None, int] | Kept] = field(default_factory=dict)
    # the load in progress: its sorted versions and what it spent; whether it patched,
    # and if the patch added, removed or resized files, its listing and their starts
    _loaded: tuple[list[bytes], tuple[int, int, int]] | None = None
    _patch: tuple[dict[str, int], tuple[list[str], dict[str, int]] | None] | None = None
    # a patched load: the contracts it parsed anew, and where the files it read again
    # lie among all (start, count); None for a load file by file
    fresh: list[LoadedContract] | None = None
    slices: list[tuple[int, int]] = field(default_factory=list)

    def begin(self, key: object) -> None:
        """Start a load whose checks depend on `key`."""
        if key != self.key:
            self.files, self.key, self.last = {}, key, None
        self.reused, self._seen, self._told = set(), {}, set()
        self._loaded, self._patch, self.fresh, self.slices = None, None, None, []

    def restart(self) -> None:
        """Forget what this load did so far (a patch given up: the files, one by one)."""
        self.reused, self._seen, self.fresh, self.slices = set(), {}, None, []

    @property
    def named(self) -> set[str]:
        """The contract files a watcher named for this (listed) load."""
        return self._told

    @property
    def told(self) -> list[str]:
        """The files a (listed) load reads again, in listing order: those a watcher
        named, and those written too lately to trust their stat (`RACY_S`)."""
        racy = self.last.racy if self.last is not None else ()
        return sorted(self._told.union(racy), key=listing_order)

    def loaded(
        self, versions: list[bytes], spent: Spent,
        patch: tuple[dict[str, int], tuple[list[str], dict[str, int]] | None] | None = None,
    ) -> None:  # fmt: skip
        """This load found these (sorted) version entries and spent `spent`: what the
        next load may patch, once `commit` says this one was clean. A `patch` gives how
        many contracts each file it read holds, and when it added, removed or resized
        files, the listing and where each file's contracts now start."""
        self._loaded = (versions, (spent.bytes, spent.contracts, spent.values))
        self._patch = patch

    def listing(self, folder: str, limit: int) -> list[str] | None:
        """The files of the last load, with the contract files a watcher saw come and go
        put in and taken out, in order; None to list the folder (nothing was said, or a
        folder, or something that may have been one, changed: its files are not named)."""
        changed, self.changed = self.changed, None
        told = _contract_files_in(changed, folder) if changed is not None and self.files else None
        if told is None:
            return None
        files = [f for f in self.files if f not in told or os.path.lexists(f)]
        for key in sorted(told - self.files.keys()):
            if os.path.lexists(key):
                bisect.insort(files, key, key=listing_order)
        if len(files) > limit:
            return None
        self._told = told
        return files

    def unread(self, path: str, spent: Spent, listed: bool = False) -> Kept | None:
        """What `path` loaded to last time if stat says it has not changed since it was
        read (and it fits in what the folder has left); None to read it. Of a `listed`
        load (`listing`), only the files the watcher named are looked at."""
        kept = self.files.get(path)
        if kept is None or kept.stat is None:
            return None
        try:
            now = kept.stat if listed and path not in self._told else stat_of(os.stat(path))
        except OSError:
            return None
        size = kept.size  # as read, when stat said what it says now
        if now != kept.stat or spent.bytes + size > spent.limits.max_folder_bytes:
            return None  # read again (so a limit's error names the place)
        if not self._fits(kept, spent):
            return None
        spent.bytes += size
        self._seen[path] = kept
        return kept

    def reuse(
        self, path: str, text_digest: bytes, stat: Stat | None, size: int, spent: Spent
    ) -> tuple[LoadedContract, ...] | None:
        """The contracts `path` loaded to last time if its text (just read, after `stat`)
        is the same; None to parse it."""
        kept = self.files.get(path)
        if kept is None or kept.digest != text_digest or not self._fits(kept, spent):
            return None
        self._seen[path] = (kept.digest, kept.values, stat, size)
        return kept.contracts

    def _fits(self, kept: Kept, spent: Spent) -> bool:
        """Whether `kept` fits in what the folder has left, and if so counted as spent
        (if not, it is parsed again, so that the limit's error names the place)."""
        limits = spent.limits
        if (spent.contracts + len(kept.contracts) > limits.max_contracts
                or spent.values + kept.values > limits.max_folder_values):  # fmt: skip
            return False
        spent.contracts += len(kept.contracts)
        spent.values += kept.values
        if isinstance(self.reused, set):
            self.reused.update(map(id, kept.contracts))
        return True

    def parsed(
        self, path: str, text_digest: bytes, values: int, stat: Stat | None, size: int
    ) -> None:
        """`path` (`size` bytes) was parsed this time, spending `values`."""
        self._seen[path] = (text_digest, values, stat, size)

    def commit(self, contracts: Iterable[LoadedContract]) -> None:
        """The load succeeded with `contracts` (as the running set keeps them): keep each
        file it read for the next load, and forget the files that are gone. A file not
        read again is kept as it was: its contracts are the ones the set holds."""
        contracts = tuple(contracts)
        by_file: dict[str, list[LoadedContract]] = defaultdict(list)
        last = self.last if self._patch is not None else None  # a patch of that load
        order: list[str] | None = None
        if self._patch is not None and last is not None:  # only the files named were read
            counts, reshaped = self._patch
            order, starts = reshaped if reshaped is not None else (None, last.starts)
            for path, count in counts.items():
                start = starts.get(path, 0)
                by_file[path] = list(contracts[start : start + count])
        else:
            starts = {}
            for i, loaded in enumerate(contracts):
                path = loaded.file
                starts.setdefault(path, i)
                if not isinstance(self._seen.get(path), Kept):
                    by_file[path].append(loaded)
        read = {path: seen if isinstance(seen, Kept) else _kept(seen, by_file.get(path, []))
                for path, seen in self._seen.items()}  # fmt: skip
        if last is None:
            files = read  # every file, in listing order
        elif order is None:  # the same files: those read in their places
            files = {**self.files, **read}
        else:  # in the new listing's order, what is gone left out
            files = {p: read[p] if p in read else self.files[p] for p in order}
        if last is None:
            racy = {p for p, kept in files.items() if kept.stat is None}
        else:
            racy = {p for p in last.racy if p in files and files[p].stat is None}
            racy.update(p for p in self._seen if files[p].stat is None)
        self.files, self._seen = files, {}
        reused = self.reused
        self.reused_count = (
            len(contracts) - len(reused.fresh) if isinstance(reused, AllBut) else len(reused)
        )
        self.reused = set()
        if self._loaded is not None:
            versions, spent = self._loaded
            self.last = LastLoad(contracts, starts, versions, spent, frozenset(racy))


def _kept(read: tuple[bytes, int, Stat | None, int], contracts: list[LoadedContract]) -> Kept:
    text_digest, values, stat, size = read
    return Kept(text_digest, tuple(contracts), values, stat, size)


def _contract_files_in(changed: set[str], folder: str) -> set[str] | None:
    """The contract files among the `changed` paths, as a listing of `folder` names
    them; None if one is, or may have been, a folder (or is outside it)."""
    base, told = os.path.abspath(folder), set()
    for path in changed:
        rel = os.path.relpath(path, base)
        if rel.startswith(os.pardir):
            return None
        key = os.path.join(folder, rel)
        try:
            mode: int | None = os.lstat(key).st_mode
        except FileNotFoundError:
            mode = None
        except OSError:
            return None
        if mode is not None and stat_kinds.S_ISDIR(mode):
            return None
        if is_contract_file(key):
            told.add(key)
        elif mode is None:  # gone: it may have been a folder
            return None
    return told
