"""Load a contracts folder: every *.yaml/*.yml under it (files.py finds and reads them
within `LoadLimits`; loader.py turns each file's text into contracts).

With the cache of the last clean load (cache.py), a file stat says is unchanged is not
read again, and one whose text is the same is not parsed again. When a watcher named the
files that changed, and each was edited in place (as many contracts as before, and no
error), the last load is patched: only those files are read, and what they hold is put
where their contracts were, with no pass over every file.
"""

from __future__ import annotations

import bisect
from pathlib import Path

from broker.contracts.cache import AllBut, FileCache, digest, stat_of
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
        patched = _patched(folder, cache, limits)
        if patched is not None:
            return patched, []
        cache.restart()  # what the patch began is forgotten: file by file, afresh
    spent = Spent(limits)
    loaded, versions, errors = _each_file(folder, spent, cache, listed)
    versions.sort()
    if cache is not None:
        cache.loaded(versions, spent, patched=False)
    return ContractSet(tuple(loaded), git_version(folder, content_version(versions))), errors


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
            text, stat, size = read[0], stat_of(read[1]), read[1].st_size
            text_digest = digest(text)
            versions.append(version_entry(name[prefix:], text_digest))
            kept = cache.reuse(name, text_digest, stat, size, spent) if cache else None
            if kept is not None:
                loaded += kept
                continue
            values = spent.values
            good, bad = load_text(text, name, spent.limits, spent)
            loaded += good
            errors += bad
            if cache is not None:
                cache.parsed(name, text_digest, spent.values - values, stat, size)
        if spent.full:
            break
    return loaded, versions, errors


def _patched(folder: Path, cache: FileCache, limits: LoadLimits) -> ContractSet | None:
    """The last clean load with only the files a watcher named (and the racy ones) read
    again, when each was in it and still holds as many contracts, and none has an
    error; else None, and the listing is loaded file by file (which names an error's
    place as ever). Over 100,000 files this skips a pass of Python over every one."""
    last, told = cache.last, cache.told
    if last is None or not told or any(path not in cache.files for path in told):
        return None
    before = [cache.files[path] for path in told]
    spent = Spent(limits)
    spent.bytes, spent.contracts, spent.values = last.spent
    for kept in before:
        spent.bytes -= kept.size
        spent.contracts -= len(kept.contracts)
        spent.values -= kept.values
    contracts, versions = list(last.contracts), list(last.versions)
    prefix, fresh, slices = len(str(folder)) + 1, [], []
    for path, kept in zip(told, before, strict=True):
        again = _read_again(path, cache, spent)
        if again is None or len(again[0]) != len(kept.contracts):
            return None
        start = last.starts.get(path, 0)
        contracts[start : start + len(kept.contracts)] = again[0]
        fresh += again[2]
        slices.append((start, len(kept.contracts)))
        name = version_entry(path[prefix:], b"")
        at = bisect.bisect_left(versions, name)
        if at == len(versions) or not versions[at].startswith(name):
            return None
        versions[at] = name + again[1]
    cache.reused = AllBut(frozenset(id(c) for c in fresh))
    cache.fresh, cache.slices = fresh, slices
    cache.loaded(versions, spent, patched=True)
    return ContractSet(tuple(contracts), git_version(folder, content_version(versions)))


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
    text, stat, size = read[0], stat_of(read[1]), read[1].st_size
    text_digest = digest(text)
    kept = cache.reuse(path, text_digest, stat, size, spent)
    if kept is not None:
        return kept, text_digest, []
    values = spent.values
    good, bad = load_text(text, path, spent.limits, spent)
    if bad or spent.full:
        return None
    cache.parsed(path, text_digest, spent.values - values, stat, size)
    return tuple(good), text_digest, good
