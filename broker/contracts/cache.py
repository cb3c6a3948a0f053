"""What each contract file loaded to when a set last loaded cleanly, so that a reload
parses and checks again only the files that changed.

A file is known by its path and a digest of its text: every file is still read at each
load (a stat could miss an edit that keeps the size and the mtime), but an unchanged one
is not composed, validated or rendered again. What it loaded to is kept as the running
set keeps it, without its line map. A file that failed is never kept: its errors are
found afresh each time.

The checks of one contract (its trigger's templates, its inputs, its owner, the
environment variables it reads) are not run again for a kept contract while what they
depend on (`key`: the targets, owners, limits, allowed variables and the environment)
is the same; a different key forgets every file. The checks across the set (names used
twice, cycles) always run on the whole set.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from broker.contracts.files import Spent
    from broker.contracts.loader import LoadedContract


def digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


@dataclass(frozen=True, slots=True)
class Kept:
    digest: bytes
    contracts: tuple[LoadedContract, ...]
    values: int  # what its documents spent of the folder's `max_folder_values`


@dataclass
class FileCache:
    key: object = None
    files: dict[str, Kept] = field(default_factory=dict)
    # the load in progress: ids of the kept contracts it reused, and every file it read
    reused: set[int] = field(default_factory=set)
    _seen: dict[str, tuple[bytes, int]] = field(default_factory=dict)

    def begin(self, key: object) -> None:
        """Start a load whose checks depend on `key`."""
        if key != self.key:
            self.files, self.key = {}, key
        self.reused, self._seen = set(), {}

    def reuse(self, path: str, text: str, spent: Spent) -> tuple[LoadedContract, ...] | None:
        """The contracts `path` loaded to last time if its text is the same and they fit
        in what the folder has left (counted as spent); None to parse it."""
        kept = self.files.get(path)
        if kept is None or kept.digest != digest(text):
            return None
        limits = spent.limits
        if (spent.contracts + len(kept.contracts) > limits.max_contracts
                or spent.values + kept.values > limits.max_folder_values):  # fmt: skip
            return None  # parsed again, so the limit's error names the place
        spent.contracts += len(kept.contracts)
        spent.values += kept.values
        self.reused.update(id(c) for c in kept.contracts)
        self._seen[path] = (kept.digest, kept.values)
        return kept.contracts

    def parsed(self, path: str, text: str, values: int) -> None:
        """`path` was parsed this time, spending `values`."""
        self._seen[path] = (digest(text), values)

    def commit(self, contracts: Iterable[LoadedContract]) -> None:
        """The load succeeded with `contracts` (as the running set keeps them): keep each
        file it read for the next load, and forget the files that are gone."""
        by_file: dict[str, list[LoadedContract]] = defaultdict(list)
        for loaded in contracts:
            by_file[loaded.location.file].append(loaded)
        self.files = {
            path: Kept(d, tuple(by_file.get(path, ())), values)
            for path, (d, values) in self._seen.items()
        }
        self._seen = {}
