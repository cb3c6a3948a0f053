"""A reload parses and checks again only the files that changed (contracts/cache.py),
and refuses exactly what a load from scratch refuses."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from broker.contracts import cache
from broker.contracts import folder as loading
from broker.contracts.files import DEFAULT_LIMITS, Spent, contract_files
from broker.contracts.model import iter_inputs
from broker.core.errors import ConfigError
from broker.core.settings import Settings
from broker.matching.loaded import Contracts, load_checked

CONTRACT = """name: {name}
partitioned: daily
when: {{all_of: [warehouse.{name}, warehouse.fx]}}
trigger: {{target: {target}, body: {{day: "{{{{ partition }}}}"}}}}
"""


def settings(folder: Path, **extra: Any) -> Settings:
    targets = {"hook": {"kind": "webhook", "url": "http://127.0.0.1:9"}}
    return Settings.model_validate({"contracts": str(folder), "targets": targets, **extra})


def write(folder: Path, name: str, target: str = "hook", **kw: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(CONTRACT.format(name=name, target=target) + "".join(
        f"{k}: {v}\n" for k, v in kw.items()))  # fmt: skip
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for i in range(5):
        write(tmp_path, f"c{i}")
    return tmp_path


def test_only_a_changed_file_is_parsed_again(folder: Path) -> None:
    first = load_checked(settings(folder))
    assert first.cache.reused_count == 0  # a first load parses everything
    write(folder, "c2", description="'changed'")
    second = load_checked(settings(folder), first.cache)
    assert second.cache.reused_count == 4
    assert second.by_name()["c2"].description == "changed"
    assert second.version != first.version
    # the unchanged contracts are the very objects of the running set
    assert second.by_name()["c0"] is first.by_name()["c0"]
    third = load_checked(settings(folder), second.cache)
    assert third.cache.reused_count == 5 and third.version == second.version


def test_a_removed_file_is_gone_and_an_added_one_comes(folder: Path) -> None:
    first = load_checked(settings(folder))
    (folder / "c4.yaml").unlink()
    write(folder, "c9")
    second = load_checked(settings(folder), first.cache)
    assert set(second.by_name()) == {"c0", "c1", "c2", "c3", "c9"}
    assert str(folder / "c4.yaml") not in second.cache.files


def test_a_broken_file_is_refused_each_time_until_it_is_fixed(folder: Path) -> None:
    first = load_checked(settings(folder))
    (folder / "c1.yaml").write_text("name: c1\nwhen: [unclosed\n")
    for _ in range(2):  # refused again, not remembered as good
        with pytest.raises(ConfigError, match=r"c1\.yaml"):
            load_checked(settings(folder), first.cache)
    write(folder, "c1")
    assert "c1" in load_checked(settings(folder), first.cache).by_name()


def test_a_name_taken_by_a_changed_file_is_refused_though_the_first_is_kept(
    folder: Path,
) -> None:
    first = load_checked(settings(folder))
    (folder / "c3.yaml").write_text(CONTRACT.format(name="c0", target="hook"))
    with pytest.raises(ConfigError, match="'c0' is already used"):
        load_checked(settings(folder), first.cache)


def test_kept_contracts_are_checked_again_when_the_settings_change(folder: Path) -> None:
    write(folder, "c0", target="other")
    config = settings(folder)
    both = config.model_copy(
        update={"targets": {**config.targets, "other": config.targets["hook"]}}
    )
    first = load_checked(both)
    # the file did not change; the target it names is gone: refused as from scratch
    with pytest.raises(ConfigError, match="unknown target 'other'"):
        load_checked(config, first.cache)
    with pytest.raises(ConfigError, match="unknown target 'other'"):
        load_checked(config)


def test_a_kept_contract_is_checked_again_when_the_environment_changes(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (folder / "c0.yaml").write_text(CONTRACT.format(name="c0", target="hook").replace(
        "body:", 'headers: {Authorization: "Bearer ${BATON_T_TOKEN}"}, body:'))  # fmt: skip
    config = settings(folder, contract_env=["BATON_T_TOKEN"])
    monkeypatch.setenv("BATON_T_TOKEN", "x")
    first: Contracts = load_checked(config)
    monkeypatch.delenv("BATON_T_TOKEN")
    with pytest.raises(ConfigError, match="BATON_T_TOKEN is not set"):
        load_checked(config, first.cache)


def datasets(contracts: Contracts, name: str) -> set[str]:
    return {i.dataset for i in iter_inputs(contracts.by_name()[name].when)}


def aged(folder: Path) -> None:
    """Every file's times a minute back, as for files written well before a load."""
    old = time.time() - 60
    for path in folder.iterdir():
        os.utime(path, (old, old))


def test_a_file_stat_says_is_unchanged_is_not_read_again(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    aged(folder)
    time.sleep(cache.RACY_S + 0.1)  # utime set their ctimes to now: let those age too
    first = load_checked(settings(folder))
    reads: list[str] = []
    real = loading.read_file

    def counted(path: str, spent: Any) -> tuple[str, os.stat_result] | None:
        reads.append(os.path.basename(path))
        return real(path, spent)

    monkeypatch.setattr(loading, "read_file", counted)
    write(folder, "c2", description="'changed'")
    second = load_checked(settings(folder), first.cache)
    assert reads == ["c2.yaml"]
    assert second.by_name()["c2"].description == "changed"
    assert second.version != first.version


def test_an_edit_that_keeps_size_and_mtime_is_still_seen(folder: Path) -> None:
    aged(folder)
    time.sleep(cache.RACY_S + 0.1)
    path = folder / "c1.yaml"
    first = load_checked(settings(folder))
    before = path.stat()
    path.write_text(path.read_text().replace("warehouse.fx", "warehouse.fy"))  # same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the same mtime
    assert path.stat().st_size == before.st_size
    second = load_checked(settings(folder), first.cache)  # the ctime moved: read again
    assert "warehouse.fy" in datasets(second, "c1")


def test_a_file_written_just_before_a_load_is_read_again_at_the_next(folder: Path) -> None:
    first = load_checked(settings(folder))  # all written just now: too recent to trust
    assert all(kept.stat is None for kept in first.cache.files.values())
    path = folder / "c3.yaml"
    path.write_text(path.read_text().replace("warehouse.fx", "warehouse.fz"))
    second = load_checked(settings(folder), first.cache)
    assert "warehouse.fz" in datasets(second, "c3")


def _index_of(loaded: Contracts) -> dict[str, list[tuple[str, str]]]:
    """dataset -> (contract, input dataset) of each subscriber, in the index's order."""
    index = loaded.matcher.index
    return {d: [(s.contract.name, s.input.dataset) for s in index.subscribers(d)]
            for d in sorted(index.datasets())}  # fmt: skip


def test_the_index_built_from_the_last_one_is_the_index_built_afresh(folder: Path) -> None:
    (folder / "sub").mkdir()
    write(folder / "sub", "s1")
    first = load_checked(settings(folder))
    write(folder, "c2", description="'changed'")  # changed: reads warehouse.c2 and .fx
    (folder / "c3.yaml").unlink()  # removed: warehouse.c3 has no reader left
    write(folder, "b9")  # added, first by name
    (folder / "c4.yaml").write_text(CONTRACT.format(name="c4", target="hook").replace(
        "warehouse.c4", "warehouse.other"))  # fmt: skip
    second = load_checked(settings(folder), first.cache, first.matcher)
    afresh = load_checked(settings(folder))
    assert _index_of(second) == _index_of(afresh)
    assert "warehouse.c3" not in _index_of(second) and "warehouse.c4" not in _index_of(second)
    fx = [name for name, _ in _index_of(second)["warehouse.fx"]]
    assert fx == ["b9", "c0", "c1", "c2", "c4", "s1"]  # the order of the files' paths
    # the unchanged contracts' subscriptions are the last index's own
    assert second.matcher.index.subscribers("warehouse.c0")[0] is \
        first.matcher.index.subscribers("warehouse.c0")[0]  # fmt: skip


def test_files_come_in_the_order_of_their_paths_parts(tmp_path: Path) -> None:
    for rel in ("a-b/x.yaml", "a/z.yaml", "a/b/y.yaml", "a.yaml", "b.yml", "a/a.yaml"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    (tmp_path / "notes.txt").write_text("")
    files, errors = contract_files(tmp_path, Spent(DEFAULT_LIMITS))
    assert errors == []
    assert files == [str(p) for p in sorted(tmp_path.rglob("*.y*ml"))]
    assert [os.path.relpath(f, tmp_path) for f in files] == [
        "a/a.yaml", "a/b/y.yaml", "a/z.yaml", "a-b/x.yaml", "a.yaml", "b.yml"]  # fmt: skip


def _listings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The folders the loader lists from now on."""
    listed: list[str] = []
    real = loading.contract_files

    def counted(folder: Path, spent: Spent) -> tuple[list[str], list[Any]]:
        listed.append(str(folder))
        return real(folder, spent)

    monkeypatch.setattr(loading, "contract_files", counted)
    return listed


def test_the_files_a_watcher_names_are_all_a_reload_looks_at(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    aged(folder)
    time.sleep(cache.RACY_S + 0.1)
    first = load_checked(settings(folder))
    listed = _listings(monkeypatch)
    write(folder, "c1", description="'named'")
    write(folder, "c3", description="'not named'")  # a change the watcher did not report
    write(folder, "a0")  # added: listed first
    (folder / "c4.yaml").unlink()
    named = {str((folder / f).resolve()) for f in ("c1.yaml", "a0.yaml", "c4.yaml")}
    second = load_checked(settings(folder), first.cache, first.matcher, changed=named)
    assert listed == []
    assert sorted(second.by_name()) == ["a0", "c0", "c1", "c2", "c3"]
    assert [c.location.file for c in second.contract_set.contracts] == [
        str(folder / f"{n}.yaml") for n in ("a0", "c0", "c1", "c2", "c3")]  # fmt: skip
    assert second.by_name()["c1"].description == "named"
    assert second.by_name()["c3"].description != "not named"
    # the whole folder looked at again (as the watch does next) sees what was not named
    third = load_checked(settings(folder), second.cache, second.matcher)
    assert listed == [str(folder)]
    assert third.by_name()["c3"].description == "not named"
    assert _index_of(third) == _index_of(load_checked(settings(folder)))


@pytest.mark.parametrize("change", ["a folder", "a folder gone", "outside"])
def test_a_folder_among_the_named_changes_lists_the_whole_folder(
    folder: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
    change: str,
) -> None:  # fmt: skip
    first = load_checked(settings(folder))
    listed = _listings(monkeypatch)
    moved = folder / "moved"
    moved.mkdir()
    write(moved, "m1")  # a folder moved in: the watcher names the folder, not its files
    named = {
        "a folder": str(moved),
        "a folder gone": str(folder / "was-a-folder"),
        "outside": str(tmp_path_factory.mktemp("elsewhere") / "x.yaml"),
    }[change]
    second = load_checked(settings(folder), first.cache, first.matcher, changed={named})
    assert listed == [str(folder)]
    assert "m1" in second.by_name()


# -- a named file edited in place is patched into the last load ------------------------
def _as_loaded(loaded: Contracts) -> list[tuple[str, Any]]:
    return [(str(c.location), c.contract) for c in loaded.contract_set.contracts]


def _named(folder: Path, *names: str) -> set[str]:
    return {str((folder / f"{n}.yaml").resolve()) for n in names}


def test_an_edit_in_place_is_patched_in_as_a_load_afresh_loads_it(folder: Path) -> None:
    (folder / "sub").mkdir()
    write(folder / "sub", "s1")
    aged(folder)
    time.sleep(cache.RACY_S + 0.1)
    first = load_checked(settings(folder))
    path = write(folder, "c2", description="'changed'")
    path.write_text(path.read_text().replace("warehouse.fx", "warehouse.rates"))
    second = load_checked(settings(folder), first.cache, first.matcher, _named(folder, "c2"))
    assert second.cache.fresh is not None  # patched, not loaded file by file
    afresh = load_checked(settings(folder))
    assert (second.version, _as_loaded(second)) == (afresh.version, _as_loaded(afresh))
    assert _index_of(second) == _index_of(afresh)
    assert second.by_name()["c0"] is first.by_name()["c0"]
    # c2 was read within RACY_S of its write: read again though only c4 is named now
    write(folder, "c2", description="'again'")
    write(folder, "c4", description="'named'")
    third = load_checked(settings(folder), second.cache, second.matcher, _named(folder, "c4"))
    assert third.cache.fresh is not None
    assert third.by_name()["c2"].description == "again"
    afresh = load_checked(settings(folder))
    assert (third.version, _as_loaded(third)) == (afresh.version, _as_loaded(afresh))
    assert _index_of(third) == _index_of(afresh)
    # a file added (it sorts first) and one removed, both named: patched in and out
    write(folder, "a0")
    (folder / "c3.yaml").unlink()
    named = _named(folder, "a0", "c3")
    fourth = load_checked(settings(folder), third.cache, third.matcher, named)
    assert fourth.cache.fresh is not None
    assert [c.contract.name for c in fourth.contract_set.contracts][:2] == ["a0", "c0"]
    afresh = load_checked(settings(folder))
    assert (fourth.version, _as_loaded(fourth)) == (afresh.version, _as_loaded(afresh))
    assert _index_of(fourth) == _index_of(afresh)
    # and the load after it patches from what that one laid out
    write(folder, "c1", description="'after'")
    fifth = load_checked(settings(folder), fourth.cache, fourth.matcher, _named(folder, "c1"))
    assert fifth.cache.fresh is not None
    afresh = load_checked(settings(folder))
    assert (fifth.version, _as_loaded(fifth)) == (afresh.version, _as_loaded(afresh))


TWO = (
    CONTRACT.format(name="c2", target="hook") + "---\n" + CONTRACT.format(name="c9", target="hook")
)


@pytest.mark.parametrize("edit", ["two contracts now", "an error", "a name taken", "too big"])
def test_a_named_file_loads_as_a_load_afresh_loads_it(folder: Path, edit: str) -> None:
    """A file that holds another number of contracts now, or has an error, a name used
    twice or passes a limit: taken or refused as a load afresh does (what a patch
    cannot take, an error or a limit, is loaded file by file)."""
    write(folder, "f0", description=f"'{'y' * 600}'")  # the folder over the least limit
    size = sum(p.stat().st_size for p in folder.iterdir())
    limits = {"contract_limits": {"max_folder_bytes": size + 300}}
    first = load_checked(settings(folder, **limits))
    path = folder / "c2.yaml"
    path.write_text({
        "two contracts now": TWO,
        "an error": CONTRACT.format(name="c2", target="nowhere"),
        "a name taken": CONTRACT.format(name="c0", target="hook"),
        "too big": CONTRACT.format(name="c2", target="hook") + f"description: '{'x' * 400}'\n",
    }[edit])  # fmt: skip

    def reload() -> Contracts:
        return load_checked(settings(folder, **limits), first.cache, first.matcher,
                            _named(folder, "c2"))  # fmt: skip

    refused = {"an error": f"{path}:4: .*unknown target 'nowhere'",
               "a name taken": f"{path}:1: name: 'c0' is already used",
               "too big": f"over the limit of {size + 300} bytes per folder"}  # fmt: skip
    if edit in refused:
        with pytest.raises(ConfigError, match=refused[edit]) as patched:
            reload()
        with pytest.raises(ConfigError) as afresh:  # as a load afresh refuses it
            load_checked(settings(folder, **limits))
        assert str(patched.value) == str(afresh.value)
        return
    second = reload()  # another number of contracts is laid out again, not refused
    afresh = load_checked(settings(folder, **limits))
    assert (second.version, _as_loaded(second)) == (afresh.version, _as_loaded(afresh))
    assert sorted(second.by_name()) == ["c0", "c1", "c2", "c3", "c4", "c9", "f0"]
