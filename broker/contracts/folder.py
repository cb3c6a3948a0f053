"""Load a contracts folder: every *.yaml/*.yml under it (files.py finds and reads them
within `LoadLimits`; loader.py turns each file's text into contracts).

With the cache of the last clean load (cache.py), a file stat says is unchanged is not
read again, and one whose text is the same is not parsed again. When a watcher named the
files that changed (edited, added or removed) and none has an error, the last load is
patched: only those files are read, and what they hold is put where their contracts
were (or, when the files or their counts changed, laid out again along the listing).
"""

from __future__ import annotations

import bisect
import os
from pathlib import Path

from broker.contracts.cache import AllBut, FileCache, LastLoad, digest, stat_of
from broker.contracts.files import (
    DEFAULT_LIMITS,
    LoadLimits,
    Spent,
    content_version,
    contract_files,
    git_version,
    read_file,
    version_entry,
)
from broker.contracts.loader import ContractSet, LoadedContract, load_text
from broker.core.errors import ContractError, Location


def load_contracts(
    folder: Path, limits: LoadLimits = DEFAULT_LIMITS, cache: FileCache | None = None
) -> tuple[ContractSet, list[ContractError]]:
    """Load every contract file under `folder`; collect all errors and keep going, up to
    a folder-wide limit. With a `cache`, a file whose text is what it was at the last
    clean load is not parsed again (cache.py)."""
    if not folder.is_dir():
        error = ContractError(Location(str(folder)), "no such contracts folder")
        return ContractSet((), content_version([])), [error]
    listed = cache.listing(str(folder), limits.max_contracts) if cache is not None else None
    if listed is not None and cache is not None:
        patched = _patched(folder, cache, limits, listed)
        if patched is not None:
            return patched, []
        cache.restart()  # what the patch began is forgotten: file by file, afresh
    spent = Spent(limits)
    loaded, versions, errors = _each_file(folder, spent, cache, listed)
    versions.sort()
    if cache is not None:
        cache.loaded(versions, spent)
    content = content_version(versions)
    return ContractSet(tuple(loaded), git_version(folder, content), content), errors


def _each_file(
    folder: Path, spent: Spent, cache: FileCache | None, listed: list[str] | None
) -> tuple[list[LoadedContract], list[bytes], list[ContractError]]:
    """The contracts of each file of the folder (or of the `listed` ones), the version
    entry of each, and the errors."""
    files, errors = (listed, []) if listed is not None else contract_files(folder, spent)
    loaded: list[LoadedContract] = []
    versions: list[bytes] = []
    prefix = len(str(folder)) + 1
    for name in files:
        unread = cache.unread(name, spent, listed is not None) if cache is not None else None
        if unread is not None:
            versions.append(version_entry(name[prefix:], unread.digest))
            loaded += unread.contracts
            continue
        try:
            read = read_file(name, spent)
        except ContractError as exc:
            errors.append(exc)
            read = None
        if read is not None:
            text_digest, contracts, _, bad = _contracts_of(name, read, cache, spent)
            versions.append(version_entry(name[prefix:], text_digest))
            loaded += contracts
            errors += bad
        if spent.full:
            break
    return loaded, versions, errors


def _patched(
    folder: Path, cache: FileCache, limits: LoadLimits, listed: list[str]
) -> ContractSet | None:
    """The last clean load with only the files a watcher named (and the racy ones) read
    again, added or taken out, when none has an error and the limits hold; else None,
    and the `listed` files are loaded one by one (which names an error's place as ever).
    Over 100,000 files this reads a handful and walks none of the others in Python,
    unless one was added, removed or holds another number of contracts (then a pass to
    place them: ~40 ms)."""
    last, told = cache.last, cache.told
    if last is None or not told:
        return None
    spent = Spent(limits)
    spent.bytes, spent.contracts, spent.values = last.spent
    for old in (cache.files[path] for path in told if path in cache.files):
        spent.bytes -= old.size
        spent.contracts -= len(old.contracts)
        spent.values -= old.values
    versions, prefix = list(last.versions), len(str(folder)) + 1
    redo: dict[str, tuple[LoadedContract, ...]] = {}  # the files read again
    gone: set[str] = set()
    fresh: list[LoadedContract] = []
    for path in told:
        name = version_entry(path[prefix:], b"")
        at = bisect.bisect_left(versions, name)
        known = at < len(versions) and versions[at].startswith(name)
        if not os.path.lexists(path):  # removed
            if path not in cache.named:  # racy, gone unnamed: still in the listing
                return None
            if known:
                del versions[at]
            if path in cache.files:
                gone.add(path)
            continue
        again = _read_again(path, cache, spent)
        if again is None:
            return None
        redo[path], fresh = again[0], fresh + again[2]
        versions[at : at + known] = [name + again[1]]
    contracts, reshaped = _placed(cache, last, listed, redo, gone)
    starts = reshaped[1] if reshaped is not None else last.starts
    cache.reused = AllBut(frozenset(id(c) for c in fresh))
    cache.fresh = fresh
    cache.slices = [(starts.get(p, 0), len(new)) for p, new in redo.items() if new]
    cache.loaded(versions, spent, ({path: len(new) for path, new in redo.items()}, reshaped))
    content = content_version(versions)
    return ContractSet(tuple(contracts), git_version(folder, content), content)


def _placed(
    cache: FileCache, last: LastLoad, listed: list[str],
    redo: dict[str, tuple[LoadedContract, ...]], gone: set[str],
) -> tuple[list[LoadedContract], tuple[list[str], dict[str, int]] | None]:  # fmt: skip
    """The last load's contracts with each file read again (`redo`) in its place, and
    those `gone` taken out: in the places their contracts had, when none was added or
    removed and each holds as many; else laid out again along the listing, with where
    each file now starts."""
    same = not gone and all(path in cache.files and len(new) == len(cache.files[path].contracts)
                            for path, new in redo.items())  # fmt: skip
    if same:
        contracts = list(last.contracts)
        for path, new in redo.items():
            start = last.starts.get(path, 0)
            contracts[start : start + len(new)] = new
        return contracts, None
    contracts, starts, files = [], {}, cache.files
    for path in listed:
        starts[path] = len(contracts)
        contracts += redo[path] if path in redo else files[path].contracts
    return contracts, (listed, starts)


def _read_again(
    path: str, cache: FileCache, spent: Spent
) -> tuple[tuple[LoadedContract, ...], bytes, list[LoadedContract]] | None:
    """One file of a patch: its contracts, the digest of its text, and those of them
    parsed anew; None if it cannot be read, is gone, or has an error."""
    try:
        read = read_file(path, spent)
    except ContractError:
        return None
    if read is None:  # gone since it was named
        return None
    text_digest, contracts, fresh, bad = _contracts_of(path, read, cache, spent)
    if bad or spent.full:  # what it noted in the cache goes with the patch (`restart`)
        return None
    return contracts, text_digest, fresh


def _contracts_of(
    path: str, read: tuple[str, os.stat_result], cache: FileCache | None, spent: Spent
) -> tuple[bytes, tuple[LoadedContract, ...], list[LoadedContract], list[ContractError]]:
    """A file just read: the digest of its text, its contracts (those kept from the
    last load when its text is what it was), the ones of them parsed anew, and the
    errors; noted in the `cache`."""
    text, stat, size = read[0], stat_of(read[1]), read[1].st_size
    text_digest = digest(text)
    kept = cache.reuse(path, text_digest, stat, size, spent) if cache is not None else None
    if kept is not None:
        return text_digest, kept, [], []
    values = spent.values
    good, bad = load_text(text, path, spent.limits, spent)
    if cache is not None:
        cache.parsed(path, text_digest, spent.values - values, stat, size)
    return text_digest, tuple(good), good, bad
