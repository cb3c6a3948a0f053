"""Nothing a contracts folder holds can crash, hang or exhaust Baton: each limit, and each
file that cannot be a contract, is one `file:line: message`, from `load_contracts`, from
`baton check`, and on the `/readyz` of a running Baton, which keeps firing its last good
set meanwhile."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from broker.contracts.check import check_contracts
from broker.contracts.files import DEFAULT_LIMITS, LoadLimits
from broker.contracts.folder import load_contracts
from broker.core.expressions import ExpressionError, compile_expression
from broker.matching.matcher import Matcher
from tests.conftest import BATON, Cluster, Proc, Sink, wait_until

GOOD = "name: a_report\npartitioned: daily\nwhen: feeds.a\ntrigger: {target: hook}\n"
B = "name: b_report\npartitioned: daily\nwhen: feeds.b\ntrigger: {target: hook}\n"
TARGETS = {"hook": "webhook"}


def alias_bomb() -> str:
    """435 bytes that are 9**9 "lol"s once every alias is expanded."""
    text = "name: bomb\nwhen: feeds.b\ntrigger:\n  target: hook\n  body:\n"
    text += '    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for inner, outer in zip("abcdefgh", "bcdefghi", strict=True):
        text += f"    {outer}: &{outer} [{','.join([f'*{inner}'] * 9)}]\n"
    return text


def nested_all_of(levels: int) -> str:
    """`levels` all_of nested in block style: YAML nesting 2 * levels + 1 (the document)."""
    text = "name: deep\ntrigger: {target: hook}\nwhen:\n"
    for i in range(levels):
        text += "  " * (2 * i + 1) + "all_of:\n" + "  " * (2 * i + 2) + "-\n"
    return text + "  " * (2 * levels + 2) + "feeds.b\n"


def deep_where(levels: int) -> str:
    where = "not " * levels + "status"
    return (
        f"name: b_report\nwhen: {{dataset: feeds.b, where: '{where}'}}\ntrigger: {{target: hook}}\n"
    )


Maker = Callable[[Path], None]


def text(content: str | bytes) -> Maker:
    def make(path: Path) -> None:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())

    return make


def sparse(size: int) -> Maker:
    def make(path: Path) -> None:
        with path.open("wb") as handle:
            handle.truncate(size)  # all holes: a reader would get 50 MB of zeros

    return make


def fifo(path: Path) -> None:
    os.mkfifo(path)  # opening it to read would wait for a writer forever


def symlink_loop(path: Path) -> None:
    path.symlink_to(path.name)


# Each bad file: how it is made, and its error after `<path>:`.
BAD: dict[str, tuple[Maker, str]] = {
    "bomb.yaml": (
        text(alias_bomb()),
        "6: over the limit of 100000 values per document, each use of an alias counted "
        "(max_values)",
    ),
    "deep.yaml": (
        text(nested_all_of(400)),
        "67: over the limit of 64 levels of nesting (max_depth)",
    ),
    "brackets.yaml": (text("[" * 100_000), "1: over the limit of 64 levels of nesting (max_depth)"),
    "dup.yaml": (
        text("name: b_report\nwhen: feeds.b\nname: c_report\ntrigger: {target: hook}\n"),
        "3: duplicate key 'name', first at line 1",
    ),
    "big.yaml": (
        sparse(50 << 20),
        "1: the file is 52428800 bytes, over the limit of 1048576 bytes per file (max_file_bytes)",
    ),
    "latin1.yaml": (
        text(b"name: b_report\nwhen: caf\xe9\n"),
        "2: not UTF-8: byte 0xe9 at offset 24",
    ),
    "fifo.yaml": (fifo, "1: not a regular file but a FIFO"),
    "loop.yaml": (symlink_loop, "1: cannot be read: Too many levels of symbolic links"),
    "date.yaml": (
        text(GOOD.replace("a_report", "b_report") + "partitions: [2026-02-30]\n"),
        "5: not valid YAML: '2026-02-30' is no timestamp: day is out of range for month",
    ),
    "where.yaml": (
        text(deep_where(33)),
        "2: when: where: column 133: nested deeper than 32 levels",
    ),
}


def folder_with(root: Path, files: dict[str, str], *bad: str) -> Path:
    folder = root / "contracts"
    folder.mkdir(exist_ok=True)
    for name, content in files.items():
        (folder / name).write_text(content)
    for name in bad:
        BAD[name][0](folder / name)
    return folder


def errors_of(folder: Path, limits: LoadLimits = DEFAULT_LIMITS) -> list[str]:
    _, errors = load_contracts(folder, limits)
    return [str(e) for e in errors]


# -- each bad file, through load_contracts and check_contracts ----------------------------


@pytest.mark.parametrize("name", sorted(BAD))
def test_each_bad_file_is_one_error_with_its_file_and_line(tmp_path: Path, name: str) -> None:
    folder = folder_with(tmp_path, {"a.yaml": GOOD}, name)
    contract_set, errors = check_contracts(folder, TARGETS)
    assert [str(e) for e in errors] == [f"{folder / name}:{BAD[name][1]}"]
    assert "a_report" in contract_set.by_name()


def test_an_alias_bomb_is_refused_with_its_line_and_little_memory(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, {"a.yaml": GOOD}, "bomb.yaml")
    assert len(alias_bomb().encode()) == 435
    tracemalloc.start()
    try:
        errors = errors_of(folder)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert errors == [f"{folder / 'bomb.yaml'}:{BAD['bomb.yaml'][1]}"]
    assert peak < 64 << 20  # expanded, it would be 387 million values


def test_an_alias_nests_as_deep_as_where_it_is_used(tmp_path: Path) -> None:
    deep = "[" * 40 + "x" + "]" * 40
    contract = GOOD + f"description: &deep {deep}\nproduces:\n  - {'[' * 30}*deep{']' * 30}\n"
    folder = folder_with(tmp_path, {"a.yaml": contract})
    # each part is 41 levels deep with its document; the alias puts 40 in 32: 72
    assert errors_of(folder) == [
        f"{folder / 'a.yaml'}:5: over the limit of 64 levels of nesting (max_depth)"
    ]


def test_all_of_nested_to_the_limit_loads_checks_and_builds_its_tree(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, {"deep.yaml": nested_all_of(31)})  # 63 levels
    contract_set, errors = check_contracts(folder, TARGETS)
    assert errors == []
    matcher = Matcher(c.contract for c in contract_set.contracts)
    assert [s.contract.name for s in matcher.index.subscribers("feeds.b")] == ["deep"]
    folder_with(tmp_path, {"deep.yaml": nested_all_of(32)})  # 65 levels
    assert errors_of(folder) == [
        f"{folder / 'deep.yaml'}:67: over the limit of 64 levels of nesting (max_depth)"
    ]


def test_a_duplicate_key_is_refused_at_the_second_naming_the_first(tmp_path: Path) -> None:
    nested = GOOD.replace("{target: hook}", "\n  target: hook\n  body: {day: 1, day: 2}")
    folder = folder_with(tmp_path, {"a.yaml": nested})
    assert errors_of(folder) == [f"{folder / 'a.yaml'}:6: duplicate key 'day', first at line 6"]


def test_a_50_mb_file_is_refused_by_its_size_unread_and_once_removed_all_is_normal(
    tmp_path: Path,
) -> None:
    folder = folder_with(tmp_path, {"a.yaml": GOOD})
    good_set, _ = load_contracts(folder)
    BAD["big.yaml"][0](folder / "big.yaml")
    tracemalloc.start()
    try:
        errors = errors_of(folder)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert errors == [f"{folder / 'big.yaml'}:{BAD['big.yaml'][1]}"]
    assert peak < 4 << 20  # not one of its 52,428,800 bytes was read
    (folder / "big.yaml").unlink()
    assert load_contracts(folder) == (good_set, [])


def test_scalars_that_their_tag_cannot_construct_are_refused_at_their_line(
    tmp_path: Path,
) -> None:
    folder = folder_with(tmp_path, {
        "int.yaml": "name: !!int many\n",
        "bool.yaml": "name: a\nwhen: !!bool maybe\n",
        "stamp.yaml": "name: a\nwhen: x\nwithin: !!timestamp soon\n",
        "key.yaml": "name: a\n? [when]\n: x\n",
    })  # fmt: skip
    assert errors_of(folder) == [
        f"{folder / 'bool.yaml'}:2: not valid YAML: 'maybe' is no bool: 'maybe'",
        f"{folder / 'int.yaml'}:1: not valid YAML: 'many' is no int: "
        "invalid literal for int() with base 10: 'many'",
        f"{folder / 'key.yaml'}:2: a mapping key must be a plain value, not a mapping or list",
        f"{folder / 'stamp.yaml'}:3: not valid YAML: 'soon' is no timestamp: "
        "'NoneType' object has no attribute 'groupdict'",
    ]


def test_a_yaml_control_character_is_refused_at_its_line(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, {"a.yaml": GOOD + "description: a\x07b\n"})
    assert errors_of(folder) == [
        f"{folder / 'a.yaml'}:5: not valid YAML: control characters are not allowed"
    ]


# -- what a folder holds besides contract files ------------------------------------------


def test_a_folder_named_yaml_is_a_folder_and_a_dangling_symlink_is_skipped(
    tmp_path: Path,
) -> None:
    folder = folder_with(tmp_path, {"a.yaml": GOOD})
    (folder / "more.yaml").mkdir()
    (folder / "more.yaml" / "b.yaml").write_text(B)
    (folder / ".#a.yaml").symlink_to("someone@host.1234")  # an editor's lock file
    contract_set, errors = load_contracts(folder)
    assert errors == [] and sorted(contract_set.by_name()) == ["a_report", "b_report"]


def test_a_symlinked_folder_loop_is_not_followed(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, {"a.yaml": GOOD})
    (folder / "sub").mkdir()
    (folder / "sub" / "up").symlink_to("..")
    (folder / "sub" / "self").symlink_to(".")
    contract_set, errors = load_contracts(folder)
    assert errors == [] and list(contract_set.by_name()) == ["a_report"]


def test_a_folder_tree_deeper_than_python_recurses_is_walked(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, {})
    chain = [folder]
    for _ in range(sys.getrecursionlimit() + 100):
        chain.append(chain[-1] / "d")
        chain[-1].mkdir()  # one at a time: os.makedirs recurses too
    (chain[-1] / "a.yaml").write_text(GOOD)
    try:
        contract_set, errors = load_contracts(folder)
        assert errors == [] and list(contract_set.by_name()) == ["a_report"]
    finally:  # bottom up, as shutil.rmtree (pytest's cleanup) recurses in Python 3.11
        (chain[-1] / "a.yaml").unlink()
        for level in reversed(chain[1:]):
            level.rmdir()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_is_refused(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, {"a.yaml": GOOD})
    (folder / "a.yaml").chmod(0)
    assert errors_of(folder) == [f"{folder / 'a.yaml'}:1: cannot be read: Permission denied"]


# -- the count and folder-wide limits -----------------------------------------------------


def test_more_contract_files_than_the_limit_are_refused_before_any_is_read(
    tmp_path: Path,
) -> None:
    folder = folder_with(tmp_path, {f"{c}.yaml": GOOD for c in "abcd"})
    assert errors_of(folder, LoadLimits(max_contracts=3)) == [
        f"{folder / 'd.yaml'}:1: over the limit of 3 contract files (max_contracts)"
    ]


def test_more_contracts_than_the_limit_are_refused_at_the_first_too_many(
    tmp_path: Path,
) -> None:
    two = f"{GOOD}---\n{B}"
    folder = folder_with(tmp_path, {"a.yaml": two, "b.yaml": two})
    assert errors_of(folder, LoadLimits(max_contracts=3)) == [
        f"{folder / 'b.yaml'}:6: over the limit of 3 contracts per folder (max_contracts)"
    ]


def test_the_folder_wide_limits_on_bytes_and_values_stop_the_loading(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, {"a.yaml": GOOD, "b.yaml": B, "c.yaml": GOOD})
    size = len(GOOD)
    assert errors_of(folder, LoadLimits(max_folder_bytes=2 * size)) == [
        f"{folder / 'c.yaml'}:1: over the limit of {2 * size} bytes per folder (max_folder_bytes)"
    ]
    # 6 values each (the document, its 4 values, the trigger's target): the 11th is b's trigger
    assert errors_of(folder, LoadLimits(max_folder_values=10)) == [
        f"{folder / 'b.yaml'}:4: over the limit of 10 values per folder (max_folder_values)"
    ]


def test_the_default_limits_are_far_above_a_real_folder() -> None:
    expected = LoadLimits(
        max_file_bytes=1 << 20, max_folder_bytes=64 << 20, max_contracts=50_000,
        max_values=100_000, max_folder_values=2_000_000, max_depth=64,
    )  # fmt: skip
    assert expected == DEFAULT_LIMITS
    with pytest.raises(ValueError, match="max_depth must be 1 to 200"):
        LoadLimits(max_depth=1000)  # deeper, Python itself would run out of recursion


# -- `where` expressions ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("not " * 33 + "status", "column 133: nested deeper than 32 levels"),
        ("-" * 40 + "metadata.rows > 0", "column 33: nested deeper than 32 levels"),
        ("metadata" + ".a" * 40 + " == 1", "column 1: nested deeper than 32 levels"),
        ("metadata" + "[0]" * 40 + " == 1", "column 1: nested deeper than 32 levels"),
        ("(" * 300 + "status" + ")" * 300, "column 201: too many nested parentheses"),
    ],
)
def test_a_where_nested_too_deep_is_refused_when_compiled(source: str, error: str) -> None:
    assert len(source) <= 1000
    with pytest.raises(ExpressionError) as caught:
        compile_expression(source)
    assert str(caught.value) == error


def test_a_long_flat_where_chain_is_fine() -> None:
    source = " and ".join(['status == "success"'] * 40)
    assert compile_expression(source).evaluate({"status": "success"})


def test_evaluating_a_where_needs_little_stack_and_never_raises_recursion_error() -> None:
    deepest = compile_expression("not " * 32 + "status")  # as deep as allowed
    compare = compile_expression("metadata.a == metadata.b")

    def nest(levels: int) -> Any:
        value: Any = []
        for _ in range(levels):
            value = [value]
        return value

    def at_depth(left: int) -> tuple[bool, bool]:
        if left:
            return at_depth(left - 1)
        return deepest.evaluate({"status": "success"}), compare.evaluate(
            {"metadata": {"a": nest(100_000), "b": nest(100_000)}}
        )

    # called with only 150 frames left, as deep in a busy worker
    assert at_depth(sys.getrecursionlimit() - 150) == (True, False)


# -- `baton check` through the real CLI ---------------------------------------------------


def _memory_limit() -> None:  # in the child, before exec: a regression fails, not the host
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


@pytest.mark.parametrize("name", sorted(BAD))
def test_baton_check_refuses_each_bad_folder_with_its_file_and_line_and_no_traceback(
    cluster: Cluster, name: str
) -> None:
    cluster.write_config("http://127.0.0.1:9")
    folder = folder_with(cluster.root, {"a.yaml": GOOD}, name)
    done = subprocess.run(
        [BATON, "check", str(folder)], env=cluster.env(), capture_output=True, text=True,
        timeout=60, preexec_fn=_memory_limit, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.splitlines() == [f"{folder / name}:{BAD[name][1]}"]
    assert "Traceback" not in done.stdout + done.stderr


# -- a running Baton ----------------------------------------------------------------------


def contracts(cluster: Cluster) -> dict[str, Any]:
    found: dict[str, Any] = httpx.get(cluster.api + "/v1/contracts", timeout=10).json()
    return found


def reload_error(cluster: Cluster) -> str:
    return str(contracts(cluster)["reload_error"] or "")


def fires(cluster: Cluster, sink: Sink, dataset: str, day: int) -> None:
    partition = f"2026-10-{day:02d}"
    event = {"dataset": dataset, "partition": partition}
    assert httpx.post(cluster.api + "/v1/events", json=event, timeout=10).status_code == 202
    key = f"baton:{dataset.replace('feeds.', '')}_report:{partition}:0"
    wait_until(lambda: key in sink.distinct_keys())


def peak_rss(proc: Proc) -> int:
    assert proc.popen is not None
    status = Path(f"/proc/{proc.popen.pid}/status").read_text()
    return next(int(line.split()[1]) << 10 for line in status.splitlines() if "VmHWM" in line)


def start(cluster: Cluster) -> tuple[Sink, Path, Proc]:
    sink = cluster.sink()
    folder = cluster.write_contracts({"a.yaml": GOOD})
    cluster.write_config(sink.url)
    return sink, folder, cluster.run()


def test_a_running_baton_keeps_firing_its_last_good_set_while_each_bad_file_comes_and_goes(
    cluster: Cluster,
) -> None:
    sink, folder, proc = start(cluster)
    version = contracts(cluster)["version"]
    fires(cluster, sink, "feeds.a", 1)
    rss = peak_rss(proc)
    for day, name in enumerate(sorted(BAD), start=2):
        BAD[name][0](folder / name)
        expected = f"{folder / name}:{BAD[name][1]}"
        wait_until(lambda: expected in reload_error(cluster))  # noqa: B023
        ready = httpx.get(cluster.api + "/readyz", timeout=10).json()
        assert ready["contracts_version"] == version
        assert expected in ready["contracts_reload_error"]
        assert proc.popen is not None and proc.popen.poll() is None, proc.output()
        fires(cluster, sink, "feeds.a", day)
        (folder / name).unlink()
        wait_until(lambda: reload_error(cluster) == "")
    assert contracts(cluster)["version"] == version
    assert peak_rss(proc) - rss < 256 << 20, "the bad files cost the process memory"
    assert "Traceback" not in proc.output()


def test_a_running_baton_watches_its_folder_again_when_it_comes_back_or_is_swapped(
    cluster: Cluster,
) -> None:
    sink, folder, proc = start(cluster)
    shutil.rmtree(folder)
    wait_until(lambda: "no such contracts folder" in reload_error(cluster))
    fires(cluster, sink, "feeds.a", 1)  # the last good set runs on

    folder.mkdir()
    (folder / "a.yaml").write_text(GOOD)
    (folder / "b.yaml").write_text(B)
    wait_until(lambda: not reload_error(cluster) and len(contracts(cluster)["contracts"]) == 2,
               timeout=30)  # fmt: skip
    fires(cluster, sink, "feeds.b", 1)

    swapped = cluster.root / "contracts.next"  # as a checkout replaces the folder
    swapped.mkdir()
    (swapped / "a.yaml").write_text(GOOD)
    folder.rename(cluster.root / "contracts.old")
    swapped.rename(folder)
    wait_until(lambda: len(contracts(cluster)["contracts"]) == 1)
    (folder / "b.yaml").write_text(B)  # and the new folder is watched
    wait_until(lambda: len(contracts(cluster)["contracts"]) == 2)
    fires(cluster, sink, "feeds.b", 2)

    assert proc.popen is not None and proc.popen.poll() is None
    # retried every second while away, logged once
    assert proc.output().count("no such contracts folder") == 1, proc.output()


def _chain(folder: Path, n: int, back_to: int | None = None) -> None:
    """Contracts c0 -> c1 -> ... through `produces`; the last produces c<back_to>'s input."""
    folder.mkdir()
    for i in range(n):
        last = i == n - 1
        out = f"d{back_to}" if last and back_to is not None else f"d{i + 1}"
        (folder / f"c{i}.yaml").write_text(
            f"name: c{i}\nwhen: d{i}\ntrigger: {{target: hook}}\nproduces: [{out}]\n"
        )


def test_a_produces_chain_longer_than_python_recurses_is_checked(tmp_path: Path) -> None:
    _chain(tmp_path / "chain", 1500)
    contract_set, errors = check_contracts(tmp_path / "chain", TARGETS)
    assert errors == [] and len(contract_set.contracts) == 1500
    _chain(tmp_path / "loop", 1500, back_to=1000)
    _, errors = check_contracts(tmp_path / "loop", TARGETS)
    [cycle] = errors
    assert cycle.message.startswith("produces: a cycle: c1000 -> c1001 -> ")
    assert cycle.message.endswith("-> c1499 -> c1000")


def test_the_config_sets_the_limits_baton_check_applies(cluster: Cluster) -> None:
    padding = "# " + "x" * 3000 + "\n"
    folder = cluster.write_contracts({"big.yaml": padding + "name: big\nwhen: a\n"
                                                 "trigger: {target: hook}\n"})  # fmt: skip
    cluster.write_config("http://127.0.0.1:9", contract_limits={"max_file_bytes": 2048})
    checked = cluster.cli("check", check=False)
    assert checked.returncode == 1
    assert checked.stderr.strip() == (
        f"{folder}/big.yaml:1: the file is 3045 bytes, over the limit of 2048 bytes per "
        "file (max_file_bytes)"
    )
