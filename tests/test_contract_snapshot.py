"""A process started over a folder that has not changed since the last one ran loads the
last clean load's snapshot (contracts/snapshot.py): it parses and checks no file again,
compares no definition with the live state, and runs the same set; a file changed
meanwhile is read again, and a snapshot that cannot be trusted is left alone."""

from __future__ import annotations

import hashlib
import io
import logging
import marshal
import os
import random
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from broker.contracts import folder as loading
from broker.contracts import snapshot
from broker.contracts.check import check_key
from broker.contracts.snapshot import Snapshots
from broker.control import apply as applying
from broker.control.apply import ChangeApplier
from broker.core.settings import Settings
from broker.matching.loaded import Contracts, load_checked
from broker.state.keys import Keys
from broker.state.redis_store import RedisStore

CONTRACT = """name: {name}
partitioned: daily
when: {{all_of: [warehouse.{name}, {{dataset: warehouse.fx, where: "metadata.rows > 0"}}]}}
deadline: "+1d09:00"
trigger: {{target: hook, body: {{day: "{{{{ partition }}}}"}}}}
"""


def settings(tmp: Path, *more_targets: str) -> Settings:
    targets = {name: {"kind": "webhook", "url": "http://127.0.0.1:9"}
               for name in ("hook", *more_targets)}  # fmt: skip
    return Settings.model_validate({"contracts": str(tmp / "contracts"), "targets": targets,
                                    "data_dir": str(tmp / "data")})  # fmt: skip


def write(tmp: Path, name: str, extra: str = "") -> None:
    (tmp / "contracts" / f"{name}.yaml").write_text(CONTRACT.format(name=name) + extra)


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    (tmp_path / "contracts").mkdir()
    for i in range(3):
        write(tmp_path, f"c{i}")
    # Every kind of field a contract keeps, durations among them (written back as ISO
    # 8601, which a contract file does not take: a snapshot once never read back).
    write(
        tmp_path,
        "c3",
        "within: 2h\nretry: {initial: 30s, max_age: 1d, factor: 3}\n"
        "owner: team-a\ndescription: all\nproduces: [x.c3]\n",
    )
    # Two documents in one file, the second a few lines down.
    (tmp_path / "contracts" / "pair.yaml").write_text(
        CONTRACT.format(name="p0") + "---\n" + CONTRACT.format(name="p1"))  # fmt: skip
    old = os.stat(tmp_path / "contracts" / "c0.yaml").st_mtime - 60  # past RACY_S
    for path in (tmp_path / "contracts").iterdir():
        os.utime(path, (old, old))
    return tmp_path


def start(config: Settings) -> tuple[Contracts, Snapshots]:
    """What `baton run` does at start: restore, load, save (and wait for the save)."""
    snapshots = Snapshots(config.data_dir, config.contracts, check_key(config, os.environ))
    contracts = load_checked(config, snapshots.restore())
    snapshots.saving(contracts.cache, contracts.version)
    snapshots.finish()
    return contracts, snapshots


class Parsed:
    """Counts the texts the loader parses."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.files: list[str] = []
        real = loading.load_text

        def counted(text: str, file: str, *args: Any) -> Any:
            self.files.append(Path(file).name)
            return real(text, file, *args)

        monkeypatch.setattr(loading, "load_text", counted)


def test_a_restart_over_an_unchanged_folder_parses_nothing_and_runs_the_same_set(
    tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, snapshots = start(settings(tmp))
    assert snapshots.path.is_file() and snapshots.path.parent == tmp / "data" / "contracts"
    parsed = Parsed(monkeypatch)
    again, _ = start(settings(tmp))
    assert parsed.files == []
    assert again.by_name() == first.by_name() and again.version == first.version
    assert [(c.contract.name, str(c.location)) for c in again.contract_set.contracts] == [
        (c.contract.name, str(c.location)) for c in first.contract_set.contracts
    ]  # each contract's file and line, for what is said about it later
    assert again.cache.reused_count == 6  # kept, so their checks did not run again
    assert {s.contract.name for s in again.matcher.index.subscribers("warehouse.fx")} == {
        *(f"c{i}" for i in range(4)), "p0", "p1"}  # fmt: skip


def test_a_file_changed_while_baton_was_down_is_read_again_and_only_it(
    tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start(settings(tmp))
    write(tmp, "c2", 'description: "changed while down"\n')
    write(tmp, "c9")  # and one added
    os.remove(tmp / "contracts" / "c3.yaml")
    parsed = Parsed(monkeypatch)
    again, _ = start(settings(tmp))
    assert sorted(parsed.files) == ["c2.yaml", "c9.yaml"]
    assert again.by_name()["c2"].description == "changed while down"
    assert sorted(again.by_name()) == ["c0", "c1", "c2", "c9", "p0", "p1"]
    # The set saved is this one: the next start parses nothing.
    parsed.files.clear()
    start(settings(tmp))
    assert parsed.files == []


def test_a_snapshot_for_other_settings_or_torn_or_changed_is_left_alone(
    tmp: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Each is said in the log, and the folder is loaded afresh, to the same set."""
    first, snapshots = start(settings(tmp))
    blob = snapshots.path.read_bytes()
    parsed = Parsed(monkeypatch)
    caplog.set_level(logging.WARNING, "baton.contracts")
    other, _ = start(settings(tmp, "another"))  # the targets are part of the key
    assert len(parsed.files) == 5 and "saved under other settings" in caplog.text
    assert other.by_name() == first.by_name()
    head = len(snapshot.LAYOUT) + 16
    stream = io.BytesIO(blob[head:])
    header, entries = marshal.load(stream), marshal.load(stream)
    # Built back without validating again (the format is the one it was saved under),
    # a contract whose data is not of a contract's shape still refuses the snapshot.
    del entries[0][5][0][0]["when"]
    forged = marshal.dumps(header, 4) + marshal.dumps(entries, 4)
    rest = blob[head + len(marshal.dumps(header, 4)) :]

    def seal(body: bytes) -> bytes:
        return snapshot.LAYOUT + hashlib.blake2b(body, digest_size=16).digest() + body

    sealed = seal(forged)
    rng = random.Random(15)
    cases = {
        "torn": blob[: len(blob) // 2],
        "another layout": b"baton-contracts-snapshot-0\n" + blob[len(snapshot.LAYOUT) :],
        "its files end before its text does": seal(blob[head:] + marshal.dumps([], 4)),
        "changed": blob[:head] + bytes([blob[head] ^ 1]) + blob[head + 1 :],
        "not what a clean load kept": sealed,
        "not what a clean load kept (a file short)": seal(
            marshal.dumps((*header[:3], [*header[3], 9]), 4) + rest
        ),
        "saved by a Baton with another contract format": seal(
            marshal.dumps((*header[:2], bytes(16), header[3]), 4) + rest
        ),
    }
    for i in range(30):  # any damage: never an error, never another set
        at, bit = rng.randrange(len(blob)), 1 << rng.randrange(8)
        cases[f"flipped {i}"] = blob[:at] + bytes([blob[at] ^ bit]) + blob[at + 1 :]
    for case, damaged in cases.items():
        snapshots.path.write_bytes(damaged)
        caplog.clear()
        parsed.files.clear()
        loaded, _ = start(settings(tmp))
        assert loaded.by_name() == first.by_name(), case
        assert len(parsed.files) == 5, case  # afresh: every file
        said = case.split(" (")[0] if not case.startswith("flipped") else "not used"
        assert said in caplog.text or "torn or changed" in caplog.text, (case, caplog.text)


async def test_a_restart_with_the_same_files_compares_no_definition_with_the_live_state(
    tmp: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The definitions recorded are of this very content: none is digested again. A
    contract changed later is still a change (its applied digest read from Redis)."""
    client = Redis.from_url(redis_url)
    await client.flushall()
    store = RedisStore(client, Keys("snap"), max_backlog=10**9, dedup_ttl_s=60)
    first, _ = start(settings(tmp))
    await applying.apply_changes(ChangeApplier(store, applying.timedelta(days=1)), first)
    digested: list[str] = []
    real = applying.digests

    def counted(contract: Any) -> dict[str, str]:
        digested.append(contract.name)
        return real(contract)

    monkeypatch.setattr(applying, "digests", counted)
    again, _ = start(settings(tmp))
    restarted = ChangeApplier(store, applying.timedelta(days=1))
    done = await restarted.apply(again.by_name(), again.matcher, again.version,
                                 again.contract_set.content)  # fmt: skip
    assert done is not None and done.changes == [] and digested == []
    write(tmp, "c1", "on_restatement: ignore\n")
    changed = load_checked(settings(tmp), again.cache, again.matcher)
    done = await restarted.apply(changed.by_name(), changed.matcher, changed.version,
                                 changed.contract_set.content)  # fmt: skip
    assert done is not None
    assert [(c.name, c.change) for c in done.changes] == [("c1", "changed")]
    assert digested == ["c1"]
    await client.aclose()


def test_a_save_that_waits_is_replaced_by_a_newer_set_and_written_at_shutdown(
    tmp: Path,
) -> None:
    config = settings(tmp)
    snapshots = Snapshots(config.data_dir, config.contracts, check_key(config, os.environ))
    first = load_checked(config)
    snapshots.saving(first.cache, first.version, after=600)
    write(tmp, "c1", 'description: "newer"\n')
    newer = load_checked(config, first.cache, first.matcher)
    snapshots.saving(newer.cache, newer.version, after=600)
    assert not snapshots.path.exists()  # both wait
    snapshots.finish()  # shutdown
    restored = snapshot.restore(snapshots.path, check_key(config, os.environ))
    assert restored is not None and restored[1] == newer.version
    kept = {c.contract.name: c.contract for k in restored[0].files.values() for c in k.contracts}
    assert kept["c1"].description == "newer"


def test_a_data_dir_that_cannot_be_written_costs_the_next_start_its_head_start_only(
    tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp / "data").write_text("a file where the folder would go")
    caplog.set_level(logging.WARNING, "baton.contracts")
    first, _ = start(settings(tmp))
    assert "not written" in caplog.text and "Traceback" not in caplog.text
    again, _ = start(settings(tmp))
    assert again.by_name() == first.by_name()
