"""Live reload: an edit on disk is live within 2 s with no restart and no event lost, a
broken edit is refused whole while the old set keeps firing, workers converge, and the
version is the Git commit when the folder is in a work tree."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Cluster, Sink, wait_until

A = "name: a_report\npartitioned: daily\nwhen: feeds.a\ntrigger: {target: hook}\n"
B = "name: b_report\npartitioned: daily\nwhen: feeds.b\ntrigger: {target: hook}\n"
BROKEN = "name: b_report\npartitioned: daily\nwhen: feeds.b\ntrigger: {target: nowhere}\n"


def contracts(cluster: Cluster) -> dict[str, Any]:
    found: dict[str, Any] = httpx.get(cluster.api + "/v1/contracts", timeout=5).json()
    return found


def names(cluster: Cluster) -> set[str]:
    return {c["name"] for c in contracts(cluster)["contracts"]}


def start(cluster: Cluster) -> tuple[Sink, Path]:
    sink = cluster.sink()
    folder = cluster.write_contracts({"a.yaml": A})
    cluster.write_config(sink.url)
    cluster.run()
    return sink, folder


def test_an_edit_is_live_within_2s_and_no_event_is_lost_meanwhile(cluster: Cluster) -> None:
    sink, folder = start(cluster)
    before = contracts(cluster)["version"]
    with httpx.Client(base_url=cluster.api, timeout=5) as client:
        for i in range(1, 11):  # events keep coming while the set changes
            day = f"2026-10-{i:02d}"
            client.post("/v1/events", json={"dataset": "feeds.a", "partition": day})
            if i == 5:
                (folder / "b.yaml").write_text(B)
                edited = time.monotonic()
        wait_until(lambda: "b_report" in names(cluster), timeout=2, every=0.05)
        took = time.monotonic() - edited
        client.post("/v1/events", json={"dataset": "feeds.b", "partition": "2026-10-01"})
    assert took < 2
    wait_until(lambda: len(sink.distinct_keys()) == 11)
    assert "baton:b_report:2026-10-01:0" in sink.distinct_keys()
    assert contracts(cluster)["version"] != before
    assert httpx.get(cluster.api + "/readyz").json()["contracts_version"] != before


def test_what_the_watcher_does_not_name_is_loaded_once_the_folder_is_quiet(
    cluster: Cluster,
) -> None:
    """watchfiles' default filter leaves out some folders (node_modules, .git, ...), so a
    contract file under one is never named: the named reload misses it, and the reload
    of the whole folder, once it has been quiet a few seconds, finds it."""
    _, folder = start(cluster)
    (folder / "node_modules").mkdir()
    (folder / "node_modules" / "b.yaml").write_text(B)
    (folder / "a.yaml").write_text(A + "description: touched\n")  # named: a reload is owed
    wait_until(
        lambda: "b_report" in names(cluster),
        timeout=30,
        what="a whole-folder reload after a quiet spell to load node_modules/b.yaml",
    )
    described = {c["name"]: c.get("description") for c in contracts(cluster)["contracts"]}
    assert described["a_report"] == "touched"


def test_a_broken_edit_is_refused_and_the_old_set_keeps_firing(cluster: Cluster) -> None:
    sink, folder = start(cluster)
    version = contracts(cluster)["version"]
    (folder / "b.yaml").write_text(BROKEN)
    error = wait_until(lambda: contracts(cluster)["reload_error"], timeout=5)
    assert "b.yaml:4: trigger.target: unknown target 'nowhere'" in error
    ready = httpx.get(cluster.api + "/readyz").json()
    assert ready["contracts_version"] == version and "nowhere" in ready["contracts_reload_error"]
    assert names(cluster) == {"a_report"}
    cluster.cli("publish", "feeds.a", "--partition", "2026-10-01")
    wait_until(lambda: sink.distinct_keys() == {"baton:a_report:2026-10-01:0"})
    answer = httpx.post(cluster.api + "/v1/contracts/reload")
    assert answer.status_code == 422 and "still running version" in answer.json()["detail"]
    assert any("b.yaml:4" in e["message"] for e in answer.json()["errors"])

    (folder / "b.yaml").write_text(B)  # fixed
    wait_until(lambda: contracts(cluster)["reload_error"] is None and names(cluster) == {
        "a_report", "b_report"}, timeout=5)  # fmt: skip
    again = httpx.post(cluster.api + "/v1/contracts/reload").json()
    assert again == {"version": contracts(cluster)["version"], "changed": False}


def test_two_processes_converge_on_the_new_version(cluster: Cluster) -> None:
    _, folder = start(cluster)
    cluster.start("worker", name="second-worker")
    wait_until(lambda: len(contracts(cluster)["processes"]) == 2)
    (folder / "b.yaml").write_text(B)
    wait_until(lambda: len({p["version"] for p in contracts(cluster)["processes"].values()}
                           | {contracts(cluster)["version"]}) == 1
               and "b_report" in names(cluster), timeout=5)  # fmt: skip


def git(folder: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                          check=True)  # fmt: skip
    return done.stdout.strip()


def test_the_version_is_the_git_commit_and_dirty_when_changed(cluster: Cluster) -> None:
    sink = cluster.sink()
    folder = cluster.write_contracts({"a.yaml": A})
    git(folder, "init", "-q")
    git(folder, "-c", "user.email=t@example.com", "-c", "user.name=t", "add", ".")
    git(folder, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "a")
    commit = git(folder, "rev-parse", "--short=12", "HEAD")
    cluster.write_config(sink.url)
    cluster.run()
    assert contracts(cluster)["version"] == commit
    (folder / "b.yaml").write_text(B)
    wait_until(lambda: contracts(cluster)["version"].startswith(f"{commit}-dirty-"), timeout=5)
    cluster.cli("publish", "feeds.b", "--partition", "2026-10-01")
    wait_until(lambda: sink.distinct_keys() == {"baton:b_report:2026-10-01:0"})
    rows = cluster.cli("triggers", "--json").stdout
    assert f'"contract_version": "{commit}-dirty-' in rows


def audit(cluster: Cluster) -> list[dict[str, str]]:
    entries: list[dict[str, str]] = httpx.get(cluster.api + "/v1/audit", timeout=5).json()["audit"]
    return entries


def test_every_reload_that_changes_or_refuses_and_every_asked_for_reload_is_audited(
    cluster: Cluster,
) -> None:
    _, folder = start(cluster)
    (folder / "b.yaml").write_text(B)
    wait_until(lambda: any(e["outcome"] == "changed" for e in audit(cluster)))
    (folder / "b.yaml").write_text(BROKEN)
    wait_until(lambda: any(e["outcome"] == "refused" for e in audit(cluster)))
    asked = httpx.post(cluster.api + "/v1/contracts/reload", timeout=10)
    assert asked.status_code == 422  # still broken: refused, and said so
    watched = [e for e in audit(cluster) if e["via"] == "watch"]
    assert [(e["actor"], e["action"], e["outcome"]) for e in watched[-2:]] == [
        ("system", "contracts.reload", "refused"),
        ("system", "contracts.reload", "changed"),
    ]
    [http] = [e for e in audit(cluster) if e["via"] == "http"]
    assert (http["actor"], http["outcome"]) == ("anonymous", "refused")
    assert "unknown target 'nowhere'" in http["detail"]
