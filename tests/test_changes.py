"""Safe changes to live state: a relaxed condition fires waiting partitions once, a
removed contract keeps its state for the retention period and resumes when added back,
and `baton diff --against` a Git ref previews those effects on the state in Redis."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from redis.asyncio import Redis

from broker.contracts.model import Contract
from broker.control.apply import ChangeApplier
from broker.control.preview import preview
from broker.core.events import Event
from broker.matching.matcher import Matcher
from broker.state.keys import Keys
from broker.state.redis_store import RedisStore
from tests.conftest import Cluster, Sink, wait_until

ALL_OF = """name: revenue_report
partitioned: daily
when: {all_of: [feeds.orders, feeds.fx]}
trigger: {target: hook}
"""
ANY_OF = ALL_OF.replace("all_of", "any_of")
OTHER = "name: other_report\npartitioned: daily\nwhen: feeds.other\ntrigger: {target: hook}\n"


def post(cluster: Cluster, dataset: str, *days: str) -> None:
    events = [{"dataset": dataset, "partition": day} for day in days]
    answer = httpx.post(cluster.api + "/v1/events", json={"events": events}, timeout=5)
    assert answer.status_code == 202, answer.text


def fired(sink: Sink) -> Counter[str]:
    """How many times each trigger id reached the target (retries of one call included:
    the webhook sink counts one per distinct delivery id)."""
    return Counter(d["idempotency_key"] for d in sink.deliveries())


def stop_baton(cluster: Cluster, sink: Sink) -> None:
    """Stop every Baton process, leaving the sink (and Redis) up."""
    for proc in cluster.procs:
        if proc is not sink.proc:
            proc.stop()
    cluster.procs = [sink.proc]


def explain(cluster: Cluster, contract: str, day: str) -> dict[str, object]:
    answer = httpx.get(f"{cluster.api}/v1/contracts/{contract}/partitions/{day}", timeout=5)
    found: dict[str, object] = answer.json()
    return found


def test_relaxing_all_of_to_any_of_fires_waiting_partitions_once(cluster: Cluster) -> None:
    sink = cluster.sink()
    folder = cluster.write_contracts({"revenue.yaml": ALL_OF})
    cluster.write_config(sink.url)
    cluster.run()
    cluster.start("worker", name="second-worker")  # two workers see the same swap
    post(cluster, "feeds.orders", "2026-10-01", "2026-10-02", "2026-10-03")
    post(cluster, "feeds.fx", "2026-10-03")
    wait_until(lambda: set(fired(sink)) == {"baton:revenue_report:2026-10-03:0"})
    old_version = httpx.get(cluster.api + "/v1/contracts", timeout=5).json()["version"]

    (folder / "revenue.yaml").write_text(ANY_OF)
    want = {f"baton:revenue_report:2026-10-0{d}:0" for d in (1, 2, 3)}
    wait_until(lambda: set(fired(sink)) == want)
    # Another reload, a restart and a late input change nothing: each fired once.
    assert httpx.post(cluster.api + "/v1/contracts/reload", timeout=5).status_code == 200
    stop_baton(cluster, sink)
    cluster.run()
    post(cluster, "feeds.fx", "2026-10-01")  # a first input for a slot: not a restatement
    post(cluster, "feeds.other", "2026-10-09")
    wait_until(lambda: explain(cluster, "revenue_report", "2026-10-01")["inputs"])
    assert fired(sink) == Counter(dict.fromkeys(want, 1))
    report = explain(cluster, "revenue_report", "2026-10-02")
    trigger = report["trigger"]
    assert isinstance(trigger, dict)
    assert trigger["contract_version"] not in ("", old_version)
    text = cluster.cli("explain", "revenue_report", "2026-10-02").stdout
    assert f"fired under contracts version {trigger['contract_version']}" in text


def test_a_change_made_while_baton_was_down_applies_at_start(cluster: Cluster) -> None:
    sink = cluster.sink()
    folder = cluster.write_contracts({"revenue.yaml": ALL_OF})
    cluster.write_config(sink.url)
    cluster.run()
    post(cluster, "feeds.fx", "2026-10-05")
    wait_until(lambda: explain(cluster, "revenue_report", "2026-10-05")["inputs"])
    stop_baton(cluster, sink)
    (folder / "revenue.yaml").write_text(ANY_OF)
    cluster.run()
    wait_until(lambda: set(fired(sink)) == {"baton:revenue_report:2026-10-05:0"})


def test_a_removed_contract_keeps_its_state_and_resumes_when_added_back(
    cluster: Cluster, redis_url: str
) -> None:
    sink = cluster.sink()
    folder = cluster.write_contracts({"revenue.yaml": ALL_OF, "other.yaml": OTHER})
    cluster.write_config(sink.url, contracts_retention="2d")
    cluster.run()
    post(cluster, "feeds.orders", "2026-10-07")
    key = "baton:p:revenue_report:2026-10-07"
    db = redis.Redis.from_url(redis_url)
    wait_until(lambda: db.exists(key))
    history = 30 * 86400  # live state: kept for the history window after its last write
    assert history - 60 < db.ttl(key) <= history

    (folder / "revenue.yaml").unlink()
    wait_until(lambda: 0 < db.ttl(key) <= 2 * 86400)  # contracts_retention now
    assert db.ttl(key) > 2 * 86400 - 60
    removed = json.loads(db.hget("baton:contracts:removed", "revenue_report") or "{}")
    assert removed["kept_until"] > removed["removed_at"]
    gone = httpx.get(cluster.api + "/v1/contracts/revenue_report", timeout=5)
    assert gone.status_code == 404 and "revenue_report was removed at" in gone.json()["detail"]
    assert "revenue_report" in httpx.get(cluster.api + "/v1/contracts").json()["removed"]
    explained = cluster.cli("explain", "revenue_report", check=False)
    assert explained.returncode == 1 and "state kept until" in explained.stderr
    post(cluster, "feeds.fx", "2026-10-07")  # nothing listens to it now
    post(cluster, "feeds.other", "2026-10-07")
    wait_until(lambda: "baton:other_report:2026-10-07:0" in fired(sink))
    assert set(fired(sink)) == {"baton:other_report:2026-10-07:0"}

    (folder / "revenue.yaml").write_text(ALL_OF)  # back within the retention period
    wait_until(lambda: db.ttl(key) > 2 * 86400)  # the history window again
    assert history - 60 < db.ttl(key) <= history
    assert not db.hexists("baton:contracts:removed", "revenue_report")
    post(cluster, "feeds.fx", "2026-10-07")
    wait_until(lambda: "baton:revenue_report:2026-10-07:0" in fired(sink))
    inputs = explain(cluster, "revenue_report", "2026-10-07")["inputs"]
    assert isinstance(inputs, list) and len(inputs) == 2  # the orders event was kept


def git(folder: Path, *args: str) -> str:
    who = ["-c", "user.email=t@example.com", "-c", "user.name=t"]
    done = subprocess.run(["git", "-C", str(folder), *who, *args], capture_output=True,
                          text=True, check=True)  # fmt: skip
    return done.stdout.strip()


LATE = """name: late_report
partitioned: daily
when: feeds.late
deadline: "+3650d"
trigger: {target: hook}
"""
GONE = """name: gone_report
partitioned: daily
when: {all_of: [feeds.gone, feeds.gone2]}
trigger: {target: hook}
"""
NEW = "name: new_report\npartitioned: daily\nwhen: feeds.new\ntrigger: {target: hook}\n"
DOUBLE = """name: late_report
partitioned: daily
when: {all_of: [feeds.late, feeds.late2]}
deadline: "+3650d"
trigger: {target: hook}
"""


def test_diff_against_a_git_ref_reports_the_effects_on_live_state(cluster: Cluster) -> None:
    """Seed state with the committed set, stop Baton, change the work tree, preview the
    change with `baton diff --against HEAD`, then start Baton and see it happen."""
    sink = cluster.sink()
    folder = cluster.write_contracts({"revenue.yaml": ALL_OF, "gone.yaml": GONE,
                                      "late.yaml": DOUBLE})  # fmt: skip
    git(folder, "init", "-q")
    git(folder, "add", ".")
    git(folder, "commit", "-qm", "contracts")
    cluster.write_config(sink.url, alerts=[{"kind": "webhook", "url": sink.url + "/alerts"}])
    cluster.run()
    post(cluster, "feeds.orders", "2026-10-01", "2026-10-02", "2026-10-03")
    post(cluster, "feeds.fx", "2026-10-03")
    post(cluster, "feeds.gone", "2026-10-04")
    post(cluster, "feeds.late", "2026-10-04")
    wait_until(lambda: set(fired(sink)) == {"baton:revenue_report:2026-10-03:0"})
    wait_until(lambda: explain(cluster, "late_report", "2026-10-04")["inputs"])
    stop_baton(cluster, sink)

    (folder / "revenue.yaml").write_text(ANY_OF)  # relaxed: two waiting days would fire
    (folder / "gone.yaml").unlink()  # removed: one waiting day stops
    (folder / "new.yaml").write_text(NEW)  # added
    (folder / "late.yaml").write_text(DOUBLE.replace("+3650d", "+1h"))  # 2026-10-04 is late

    text = cluster.cli("diff", "--against", "HEAD", str(folder)).stdout
    commit = git(folder, "rev-parse", "--short=12", "HEAD")
    assert text.startswith(f"contracts {commit} -> {commit}-dirty-")
    lines = text.splitlines()
    assert "~ revenue_report: changed (condition)" in lines
    assert (
        "    => 2 waiting partitions of revenue_report would fire at once: 2026-10-01, 2026-10-02"
        in lines
    )
    assert "+ new_report: added" in lines
    assert "    => a new contract with no inputs yet" in lines
    assert "- gone_report: removed" in lines
    assert any(line.startswith("    => stops: 1 waiting partition would never fire (2026-10-04)")
               for line in lines)  # fmt: skip
    assert '    deadline: "+3650d" -> "+1h"' in lines
    assert "    => deadline moves earlier: 1 partition would alert now (2026-10-04)" in lines

    report = json.loads(cluster.cli("diff", "--against", "HEAD", str(folder), "--json").stdout)
    effects = {c["name"]: {e["kind"]: e for e in c["effects"]} for c in report["contracts"]}
    assert effects["revenue_report"]["would_fire"]["partitions"] == ["2026-10-01", "2026-10-02"]
    assert effects["late_report"]["alert_now"]["count"] == 1
    assert effects["new_report"]["no_inputs"]["count"] == 0
    assert effects["gone_report"]["stops"]["partitions"] == ["2026-10-04"]
    assert fired(sink) == Counter({"baton:revenue_report:2026-10-03:0": 1})  # diff fired nothing

    git(folder, "commit", "-qam", "relax revenue, drop gone, tighten late")
    git(folder, "add", ".")
    git(folder, "commit", "-qm", "new")
    cluster.run()  # what the preview said now happens
    want = {f"baton:revenue_report:2026-10-0{d}:0" for d in (1, 2, 3)}
    wait_until(lambda: set(fired(sink)) == want)
    alerts = wait_until(lambda: httpx.get(cluster.api + "/v1/alerts", timeout=5).json()["alerts"])
    assert [(a["contract"], a["partition"]) for a in alerts] == [("late_report", "2026-10-04")]


# -- the preview says what applying does ---------------------------------------------------
HOUR_INPUT = {"dataset": "feeds.h", "partitioned": "hourly"}
AB = {"all_of": ["a", "b"]}
# name: (old when, new when, old grain, new grain, old within, new within)
SCENARIOS = {
    "relaxed": (AB, {"any_of": ["a", "b"]}, "daily", "daily", None, None),
    "an input dropped": (AB, "a", "daily", "daily", None, None),
    "unpartitioned relaxed": (AB, {"any_of": ["a", "b"]}, "none", "none", None, None),
    "daily to hourly": (HOUR_INPUT, "feeds.h", "daily", "hourly", None, None),
    "tightened": ("a", AB, "daily", "daily", None, None),
    "within widened": (AB, AB, "daily", "daily", "1h", "6h"),
    "within dropped": (AB, AB, "daily", "daily", "1h", None),
    "within still too short": (AB, AB, "daily", "daily", "1h", "2h"),
}
# (dataset, partition, hours after the first landed)
SEEDED = [("a", "2026-10-01", 0), ("b", "2026-10-02", 0), ("a", "2026-10-03", 0),
          ("b", "2026-10-03", 0), ("feeds.h", "2026-10-01T03", 0),
          ("feeds.h", "2026-10-01T04", 0), ("a", "2026-10-06", 0),
          ("b", "2026-10-06", 5)]  # fmt: skip


def _contract(when: Any, partitioned: str, within: str | None) -> Contract:
    return Contract.parse({"name": "r", "partitioned": partitioned, "when": when,
                                    "within": within, "trigger": {"target": "hook"}})  # fmt: skip


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_applying_a_change_fires_what_the_preview_said(scenario: str, redis_url: str) -> None:
    before, after, old_grain, new_grain, old_within, new_within = SCENARIOS[scenario]
    old = _contract(before, old_grain, old_within)
    new = _contract(after, new_grain, new_within)
    client = Redis.from_url(redis_url)
    await client.flushall()
    store = RedisStore(client, Keys("chg"), max_backlog=10**9, dedup_ttl_s=60)
    applier = ChangeApplier(store, timedelta(days=1))
    await applier.apply({"r": old}, Matcher([old]), "v1")
    matcher = Matcher([old])
    first = datetime(2026, 10, 7, tzinfo=UTC)
    # Unpartitioned: a+b fire, then a alone waits for a new b.
    seeded = SEEDED[:3] if old_grain == "none" else SEEDED
    for n, (dataset, day, hours) in enumerate(seeded, 1):
        partition = None if old_grain == "none" else day
        landed = first + timedelta(hours=hours)
        item = Event(dataset=dataset, partition=partition, event_id=f"e{n}", occurred_at=landed)
        await store.record(matcher.plan(item, landed, f"{n}-0").ops, "v1")
    fired_before = {r.id for r in await store.recent_triggers(1000)}

    [change] = await preview(applier.state, {"r": old}, {"r": new}, timedelta(days=1))
    said = {p for e in change.effects if e.kind == "would_fire" for p in e.partitions}
    done = await applier.apply({"r": new}, Matcher([new]), "v2")
    assert done is not None
    fired = {(await store.get_trigger(t)).partition for t in done.fired}  # type: ignore[union-attr]
    assert fired == said
    assert len(done.fired) == len(set(done.fired))
    assert (await applier.apply({"r": new}, Matcher([new]), "v2")).changes == []  # type: ignore[union-attr]
    after_ids = [r.id for r in await store.recent_triggers(1000)]
    assert len(after_ids) == len(set(after_ids))
    assert set(after_ids) == fired_before | set(done.fired)  # nothing else, nothing twice
    await client.aclose()
    expected = {
        "relaxed": {"2026-10-01", "2026-10-02"},
        "an input dropped": {"2026-10-01"},
        "unpartitioned relaxed": {""},
        "daily to hourly": {"2026-10-01T03", "2026-10-01T04"},
        "tightened": set(),
        "within widened": {"2026-10-06"},
        "within dropped": {"2026-10-06"},
        "within still too short": set(),
    }
    assert said == expected[scenario]


# -- an applier compares what its next set changed, and everything after another applied --
def _named(name: str, when: Any) -> Contract:
    return Contract.parse({"name": name, "partitioned": "daily", "when": when,
                                    "trigger": {"target": "hook"}})  # fmt: skip


def _changes(applied: Any) -> list[tuple[str, str, list[str]]]:
    assert applied is not None
    return [(c.name, c.change, c.aspects) for c in applied.changes]


async def test_an_applier_compares_only_what_changed_unless_another_applied_since(
    redis_url: str,
) -> None:
    client = Redis.from_url(redis_url)
    await client.flushall()

    def applier(namespace: str) -> ChangeApplier:
        store = RedisStore(client, Keys(namespace), max_backlog=10**9, dedup_ttl_s=60)
        return ChangeApplier(store, timedelta(days=1))

    a, b, c = _named("a", "x"), _named("b", "y"), _named("c", "z")
    v1 = {"a": a, "b": b, "c": c}
    b2, d = _named("b", {"any_of": ["y", "w"]}), _named("d", "w")
    v2 = {"a": a, "b": b2, "d": d}  # a shared, b changed, c removed, d added
    mine, afresh = applier("one"), applier("two")
    for each in (mine, afresh):
        await each.apply(v1, Matcher(v1.values()), "v1")
    # The same changes whether compared by object (mine) or in full (a new applier).
    said = _changes(await mine.apply(v2, Matcher(v2.values()), "v2"))
    full = _changes(await applier("two").apply(v2, Matcher(v2.values()), "v2"))
    assert said == full == [("b", "changed", ["condition"]), ("c", "removed", []),
                            ("d", "added", [])]  # fmt: skip
    assert await client.hgetall("one:contracts:defs") == await client.hgetall("two:contracts:defs")
    assert _changes(await mine.apply(v2, Matcher(v2.values()), "v2")) == []

    # Another process applies b's next definition; this one then loads its own last set
    # again (the same b2 object): b changed back, though not from this one's last set.
    b3 = _named("b", {"all_of": ["y", "w"]})
    v3 = {"a": a, "b": b3, "d": d}
    other = _changes(await applier("one").apply(v3, Matcher(v3.values()), "v3"))
    assert other == [("b", "changed", ["condition"])]
    assert _changes(await mine.apply(v2, Matcher(v2.values()), "v2")) == other
    # And a set another process applied already changes nothing here.
    assert _changes(await applier("one").apply(v3, Matcher(v3.values()), "v3")) == other
    assert _changes(await mine.apply(v3, Matcher(v3.values()), "v3")) == []
    await client.aclose()
