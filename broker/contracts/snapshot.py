"""The file cache of the last clean load (cache.py), kept on disk, so that a process
started over a folder that has not changed reads, parses and checks none of it again.

One file per contracts folder under `data_dir/contracts/`, written after a clean load
that changed the set (`serve.py`: 10 s after, the newest set of a run of changes; whole,
to a temporary name, then renamed: a reader sees the last one or the one before, never
half of one) and read once at start. It holds, per
contract file, what the cache keeps of it (stat, digest, size, the values it spent)
and each contract as the JSON data it validated to, with its line; a digest of what
their checks depended on (`check.check_key`), and one of the contract format
(`model.spec_digest`). At start each contract is built back from its data as it was
(`Contract.from_data`, ~6 us a contract; the YAML, the validation, the line maps and
the checks are what cost), and a file whose stat or text is what the snapshot says is
not parsed again, exactly as within one process.

The file is data only (`marshal` of plain values: no code, no pickle) and carries a
digest of itself; one that is unreadable, torn, of another layout or for other
settings is ignored, and the folder is loaded afresh. What it holds says nothing the
contract files do not (trigger fields as written, `${VAR}` unresolved).
"""

from __future__ import annotations

import hashlib
import io
import logging
import marshal
import os
import threading
from pathlib import Path
from typing import Any

from broker.contracts.cache import FileCache, Kept
from broker.contracts.loader import LoadedContract
from broker.contracts.model import Contract, alike, spec_digest
from broker.core.collector import no_collection

log = logging.getLogger("baton.contracts")

LAYOUT = b"baton-contracts-snapshot-3\n"
CHUNK = 4096  # files
_DIGEST = 16
_saving = threading.Lock()


def snapshot_path(data_dir: Path, folder: Path) -> Path:
    """Where the snapshot of `folder` lives: one per folder, so two configs sharing a
    data dir keep theirs apart."""
    name = hashlib.blake2b(str(folder.resolve()).encode(), digest_size=8).hexdigest()
    return data_dir / "contracts" / f"{name}.snapshot"


def key_digest(key: object) -> bytes:
    return hashlib.blake2b(repr(key).encode(), digest_size=_DIGEST).digest()


def save(path: Path, cache: FileCache, version: str) -> None:
    """Write what `cache` keeps (as a clean load of set `version` left it) to `path`.
    Meant for a thread: it reads the cache's dicts as they are now (a later load
    replaces them, never changes them in place) and writes one at a time. Files go in
    chunks of `CHUNK`, each read back and let go in turn (100,000 files at once: ~150
    MB of plain data alive at the peak, and a process keeps the memory of its peak)."""
    files, key = list(cache.files.items()), cache.key
    chunks = [marshal.dumps([_entry(name, kept) for name, kept in files[at : at + CHUNK]], 4)
              for at in range(0, len(files), CHUNK)]  # fmt: skip
    sizes = [len(chunk) for chunk in chunks]
    body = marshal.dumps((version, key_digest(key), spec_digest(), sizes), 4) + b"".join(chunks)
    blob = LAYOUT + hashlib.blake2b(body, digest_size=_DIGEST).digest() + body
    with _saving:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_bytes(blob)
        os.replace(temporary, path)


def _entry(name: str, kept: Kept) -> tuple[object, ...]:
    contracts = [(c.contract.as_data(exclude_defaults=True), c.line)
                 for c in kept.contracts]  # fmt: skip
    return name, kept.digest, kept.values, kept.stat, kept.size, contracts


def restore(path: Path, key: object) -> tuple[FileCache, str] | None:
    """A cache as the snapshot at `path` left it, and the set version it was saved
    with; None (the reason logged) when there is none to use for checks that depend on
    `key`."""
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("contracts snapshot %s not read (%s): loading the folder afresh", path, exc)
        return None
    try:
        with no_collection(), alike():  # 100,000 contracts: 6 s with it, 1.5 s without
            version, files = _parsed(blob, key)
    except _Unusable as exc:
        log.warning("contracts snapshot %s not used (%s): loading the folder afresh", path, exc)
        return None
    cache = FileCache(key=key, files=files)
    return cache, version


class _Unusable(Exception):
    pass


def _parsed(blob: bytes, key: object) -> tuple[str, dict[str, Kept]]:
    head = len(LAYOUT)
    if not blob.startswith(LAYOUT):
        raise _Unusable("another layout")
    body = blob[head + _DIGEST :]
    if hashlib.blake2b(body, digest_size=_DIGEST).digest() != blob[head : head + _DIGEST]:
        raise _Unusable("torn or changed since it was written")
    stream = io.BytesIO(body)
    try:
        version, kept_key, kept_spec, sizes = marshal.load(stream)  # the header alone: small
        if kept_key != key_digest(key):
            raise _Unusable("saved under other settings (targets, owners, limits or variables)")
        if kept_spec != spec_digest():
            raise _Unusable("saved by a Baton with another contract format")
        at, view = stream.tell(), memoryview(body)
        files: dict[str, Kept] = {}
        for size in sizes:  # loads of a slice: load of a stream reads it a call at a time
            files.update(_kept(entry) for entry in marshal.loads(view[at : at + size]))
            at += size
    except _Unusable:
        raise
    except Exception as exc:  # whatever it is, the folder is read instead
        raise _Unusable(f"not what a clean load kept: {type(exc).__name__}: {exc}") from None
    if at != len(body):
        raise _Unusable("not what a clean load kept: its files end before its text does")
    return str(version), files


def _kept(entry: Any) -> tuple[str, Kept]:
    name, text_digest, values, stat, size, contracts = entry
    if not isinstance(name, str) or not isinstance(text_digest, bytes):
        raise TypeError("a file's name and digest are text and bytes")
    loaded = []
    for data, line in contracts:
        contract = Contract.from_data(data)
        loaded.append(LoadedContract(contract, name, int(line)))
    stat = None if stat is None else int(stat)
    return str(name), Kept(bytes(text_digest), tuple(loaded), int(values), stat, int(size))


class Snapshots:
    """The snapshot of one process's contracts folder: restored at start, saved after
    each clean load that changed the set (in a thread, the newest set last)."""

    def __init__(self, data_dir: Path, folder: Path, key: object) -> None:
        self.path, self.key = snapshot_path(data_dir, folder), key
        self.saved: str | None = None
        self.thread: threading.Timer | None = None
        self._pending: tuple[FileCache, str] | None = None
        self._claim = threading.Lock()

    def restore(self) -> FileCache | None:
        restored = restore(self.path, self.key)
        if restored is None:
            return None
        cache, self.saved = restored
        return cache

    def saving(self, cache: FileCache, version: str, after: float = 0.0) -> None:
        """Save set `version` unless it is the one saved, `after` seconds from now (at
        start: not while the process gets ready, on the same CPU)."""
        if version == self.saved:
            return
        self.saved = version
        if self.thread is not None:  # a save still waiting: this newer set replaces it
            self.thread.cancel()
        with self._claim:
            self._pending = (cache, version)
        self.thread = threading.Timer(after, self._save_pending)
        self.thread.daemon = True
        self.thread.start()

    def finish(self, timeout: float = 60.0) -> None:
        """Write a save still waiting, or wait for the one under way (at shutdown: a
        start after it uses the snapshot)."""
        if self.thread is not None:
            self.thread.cancel()
            self.thread.join(timeout)
        self._save_pending()

    def _save_pending(self) -> None:
        with self._claim:
            pending, self._pending = self._pending, None
        if pending is not None:
            self._save(*pending)

    def _save(self, cache: FileCache, version: str) -> None:
        try:
            save(self.path, cache, version)
        except OSError as exc:  # a full disk or a read-only data_dir: the next start parses
            log.warning("contracts snapshot %s not written (%s): the next start loads the "
                        "folder afresh", self.path, exc)  # fmt: skip
        except Exception:  # a bug: said in full, and the process goes on as it is
            log.exception("contracts snapshot %s not written", self.path)
