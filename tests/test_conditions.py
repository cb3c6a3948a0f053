"""Contract conditions: the tree `build_tree` makes of a contract's `when`, and how
record.lua evaluates it on a real Redis, checked against a plain-Python reference under
any order and duplication of events."""

from __future__ import annotations

import asyncio
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import count
from typing import Any

import redis
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from broker.contracts.model import Contract
from broker.core.events import Event
from broker.core.partitions import Calendar, Granularity, required_input_keys
from broker.matching.condition import (
    build_tree,
    contract_calendar,
    fill,
    holds,
    leaves,
    slot,
    split_slot,
    tree_json,
    tree_shape,
)
from broker.matching.matcher import Matcher
from broker.state.keys import Keys
from broker.state.redis_store import RedisStore

DAY = "2026-11-23"
SEP = "\x1f"


def contract(when: Any, partitioned: str = "daily", **extra: Any) -> Contract:
    return Contract.parse(
        {"name": "cond", "partitioned": partitioned, "when": when,
         "trigger": {"target": "hook"}, **extra}
    )  # fmt: skip


def from_yaml(text: str) -> Any:
    return yaml.safe_load(text)


def s(dataset: str, partition: str = DAY, where: str | None = None) -> dict[str, str]:
    return {"s": slot(dataset, partition, where)}


# -- the tree, by hand -------------------------------------------------------------------


SHAPED = [  # (granularity, condition, partitions): each input reads the partition itself
    ("daily", {"all_of": ["a", {"dataset": "b", "where": "metadata.n > 0"}]}, [DAY, "1900-01-01"]),
    ("hourly", {"any_of": ["a", {"all_of": ["b", "c"]}]}, ["2026-11-23T05"]),
    ("daily", {"all_of": ["a", {"dataset": "g", "partitioned": "none"}]}, [DAY]),
    ("none", {"all_of": ["a", "b"]}, [""]),
    ("static", {"any_of": ["a", "b"]}, ["eu-west.1", "us:2+x~y_Z"]),
    ("daily", {"dataset": "a", "offset": 0}, [DAY]),
]  # fmt: skip
UNSHAPED = [  # an offset, a finer input, a coarser one: built each time
    ("daily", {"all_of": ["a", {"dataset": "b", "offset": -1}]}),
    ("daily", {"all_of": ["a", {"dataset": "b", "partitioned": "hourly"}]}),
    ("hourly", {"all_of": ["a", {"dataset": "b", "partitioned": "daily"}]}),
]


def test_a_tree_filled_into_its_shape_is_the_tree_built() -> None:
    for grain, when, partitions in SHAPED:
        extra = {"partitions": partitions} if grain == "static" else {}
        made = contract(when, grain, **extra)
        shape = tree_shape(made)
        assert shape is not None, when
        for partition in partitions:
            assert fill(shape, partition) == tree_json(build_tree(made, partition)), partition
    for grain, when in UNSHAPED:
        assert tree_shape(contract(when, grain)) is None, when


def test_a_single_dataset_is_one_slot_of_the_contract_partition() -> None:
    assert build_tree(contract("warehouse.orders"), DAY) == {
        "s": f"warehouse.orders{SEP}{DAY}{SEP}"
    }


def test_a_slot_names_dataset_partition_and_a_tag_of_its_filter() -> None:
    tagged = slot("b", DAY, "metadata.n > 0")
    dataset, partition, tag = tagged.split(SEP)
    assert (dataset, partition) == ("b", DAY) == split_slot(tagged)
    assert re.fullmatch(r"[0-9a-f]{8}", tag)
    assert slot("b", DAY, "metadata.n > 0") == tagged
    assert slot("b", DAY, "metadata.n > 1") != tagged
    assert slot("b", DAY, None) == f"b{SEP}{DAY}{SEP}"


def test_all_of_and_any_of_keep_their_kind_and_the_order_written() -> None:
    assert build_tree(contract({"all_of": ["b", "a"]}), DAY) == {"all": [s("b"), s("a")]}
    assert build_tree(contract({"any_of": ["a", "b"]}), DAY) == {"any": [s("a"), s("b")]}


def test_a_condition_nested_three_deep_is_kept_as_written() -> None:
    nested = from_yaml(
        """
        all_of:
          - a
          - any_of:
              - b
              - all_of: [c, d]
        """
    )
    assert build_tree(contract(nested), DAY) == {
        "all": [s("a"), {"any": [s("b"), {"all": [s("c"), s("d")]}]}]
    }


def test_the_same_dataset_under_two_branches_is_one_slot_read_twice() -> None:
    tree = build_tree(contract(from_yaml("any_of: [{all_of: [a, b]}, {all_of: [a, c]}]")), DAY)
    assert tree == {"any": [{"all": [s("a"), s("b")]}, {"all": [s("a"), s("c")]}]}
    assert list(leaves(tree)) == [s("a")["s"], s("b")["s"], s("c")["s"]]
    assert holds(tree, {s("a")["s"], s("c")["s"]})
    assert not holds(tree, {s("b")["s"], s("c")["s"]})


def test_an_offset_input_is_a_slot_of_the_shifted_partition() -> None:
    tree = build_tree(contract(from_yaml("all_of: [a, {dataset: a, offset: -1}]")), DAY)
    assert tree == {"all": [s("a"), s("a", "2026-11-22")]}


def test_a_filtered_input_is_a_slot_of_its_own_beside_the_unfiltered_one() -> None:
    tree = build_tree(
        contract(from_yaml("any_of: [b, {dataset: b, where: 'metadata.n > 0'}]")), DAY
    )
    assert tree == {"any": [s("b"), s("b", DAY, "metadata.n > 0")]}
    assert tree["any"][0] != tree["any"][1]


def test_a_finer_input_needs_every_hour_of_the_day() -> None:
    tree = build_tree(contract({"dataset": "clicks", "partitioned": "hourly"}), DAY)
    assert tree == {"all": [s("clicks", f"{DAY}T{hour:02d}") for hour in range(24)]}


def test_a_finer_input_needs_every_hour_of_a_day_that_leaves_summer_time() -> None:
    berlin = contract({"dataset": "clicks", "partitioned": "hourly"}, timezone="Europe/Berlin")
    tree = build_tree(berlin, "2026-10-25")
    hours = [split_slot(leaf["s"])[1] for leaf in tree["all"]]
    hourly = Calendar(Granularity.HOURLY, "Europe/Berlin")
    assert hours == required_input_keys(contract_calendar(berlin), "2026-10-25", hourly)
    assert len(set(hours)) == 25


def test_a_coarser_input_needs_the_week_that_contains_the_day_shifted_by_its_offset() -> None:
    assert build_tree(contract({"dataset": "w", "partitioned": "weekly"}), DAY) == s(
        "w", "2026-W48"
    )
    last_week = {"dataset": "w", "partitioned": "weekly", "offset": -1}
    assert build_tree(contract(last_week), DAY) == s("w", "2026-W47")


def test_an_unpartitioned_contract_waits_on_the_empty_partition() -> None:
    tree = build_tree(contract({"any_of": ["a", "b"]}, partitioned="none"), "")
    assert tree == {"any": [s("a", ""), s("b", "")]}


def test_tree_json_is_compact_and_reads_back_as_the_same_tree() -> None:
    tree = build_tree(contract(from_yaml("all_of: [a, {any_of: [b, café.📦]}]")), DAY)
    text = tree_json(tree)
    assert " " not in text
    assert "\\u001f" in text  # the separator travels escaped; Lua's cjson reads it back
    assert json.loads(text) == tree


# -- generated conditions and a plain-Python reference ---------------------------------

POSITIVE = "metadata.n > 0"
HAS_N = "metadata.n >= 0"  # passes every event here, so it shares them with plain `b`
FILTERS: dict[str | None, Callable[[int], bool]] = {
    None: lambda n: True,
    POSITIVE: lambda n: n > 0,
    HAS_N: lambda n: True,
}
PARCELS = "café.📦"  # non-ASCII and astral: must survive JSON escaping into Lua and back


@dataclass(frozen=True)
class Leaf:
    """An input the generated conditions use, and what it means in plain Python."""

    dataset: str
    offset: int = 0
    where: str | None = None

    def as_when(self) -> str | dict[str, Any]:
        if self.offset == 0 and self.where is None:
            return self.dataset
        spec: dict[str, Any] = {"dataset": self.dataset}
        if self.offset:
            spec["offset"] = self.offset
        if self.where:
            spec["where"] = self.where
        return spec

    def passes(self, n: int) -> bool:
        return FILTERS[self.where](n)


@dataclass(frozen=True)
class Node:
    kind: str  # all_of | any_of
    children: tuple[Leaf | Node, ...]


Cond = Leaf | Node
LEAVES = (
    Leaf("a"), Leaf("b"), Leaf(PARCELS), Leaf("a", offset=-1),
    Leaf("b", where=POSITIVE), Leaf("b", where=HAS_N),
)  # fmt: skip
# Events come for two days; through `a` at offset -1 they feed three contract partitions.
EVENT_DAYS = ("2026-11-22", "2026-11-23")
DAYS = (*EVENT_DAYS, "2026-11-24")
BASE = datetime(2026, 11, 24, tzinfo=UTC)


def as_when(cond: Cond) -> Any:
    if isinstance(cond, Leaf):
        return cond.as_when()
    return {cond.kind: [as_when(c) for c in cond.children]}


def evaluate(cond: Cond, leaf_holds: Callable[[Leaf], bool]) -> bool:
    """The reference: plain booleans, all() and any()."""
    if isinstance(cond, Leaf):
        return leaf_holds(cond)
    results = [evaluate(c, leaf_holds) for c in cond.children]
    return all(results) if cond.kind == "all_of" else any(results)


def shift(day: str, offset: int) -> str:
    return (date.fromisoformat(day) + timedelta(days=offset)).isoformat()


def reference(cond: Cond, day: str, done: Mapping[tuple[str, str], set[int]]) -> bool:
    """Does `cond` hold for contract partition `day`, given the `metadata.n` of every
    success event seen per (dataset, partition)?"""

    def leaf_holds(leaf: Leaf) -> bool:
        return any(leaf.passes(n) for n in done.get((leaf.dataset, shift(day, leaf.offset)), ()))

    return evaluate(cond, leaf_holds)


def used_leaves(cond: Cond) -> set[Leaf]:
    if isinstance(cond, Leaf):
        return {cond}
    return set().union(*(used_leaves(c) for c in cond.children))


def conditions(leaf: st.SearchStrategy[Leaf], depth: int = 3) -> st.SearchStrategy[Cond]:
    """A leaf, or all_of / any_of over 1-3 conditions, nested `depth` deep at most."""
    if depth == 0:
        return leaf
    children = st.lists(conditions(leaf, depth - 1), min_size=1, max_size=3).map(tuple)
    return st.one_of(leaf, st.builds(Node, st.sampled_from(("all_of", "any_of")), children))


@st.composite
def histories(
    draw: st.DrawFn,
    cond: Cond,
    versions: int,
    partitions: tuple[str | None, ...] = EVENT_DAYS,
) -> list[Event]:
    """Per (dataset of `cond`, partition): up to `versions` success events, each later than
    the one before, and maybe a failed event (with metadata that would pass every filter)."""
    clock = count(1)
    events = []
    for dataset in sorted({leaf.dataset for leaf in used_leaves(cond)}):
        for day in partitions:
            key = f"{dataset}/{day}"
            for v in range(draw(st.integers(0, versions))):
                n = draw(st.integers(0, 1))
                events.append(event(dataset, day, f"{key}/v{v}", next(clock), n))
            if draw(st.booleans()):
                events.append(event(dataset, day, f"{key}/failed", next(clock), 1, "failed"))
    return events


def event(
    dataset: str, day: str | None, id: str, second: int, n: int, status: str = "success"
) -> Event:
    return Event(
        dataset=dataset, partition=day, event_id=id, status=status,
        occurred_at=BASE + timedelta(seconds=second), metadata={"n": n},
    )  # fmt: skip


def arrivals(events: list[Event]) -> st.SearchStrategy[list[Event]]:
    """Every event at least once, some twice or more, in any order."""
    repeats = st.lists(st.sampled_from(events), max_size=len(events)) if events else st.just([])
    return repeats.flatmap(lambda extra: st.permutations(events + extra))


# -- the real record path -----------------------------------------------------------------


async def _replay(url: str, matcher: Matcher, order: list[Event]) -> list[list[str]]:
    client = Redis.from_url(url)
    store = RedisStore(client, Keys("cond"), max_backlog=10**9, dedup_ttl_s=60)
    received = datetime(2026, 11, 25, tzinfo=UTC)
    steps = []
    for n, item in enumerate(order, 1):
        plan = matcher.plan(item, received, f"{n}-0")
        outcomes = await store.record(plan.ops, "v1")
        steps.append(sorted(o.trigger_id for o in outcomes if o.trigger_id))
    await client.aclose()
    return steps


def replay(url: str, cond: Any, order: list[Event], **contract_fields: Any) -> list[list[str]]:
    """The trigger ids each event fired, through Matcher and record.lua, on a fresh Redis;
    `cond` is a generated condition or a raw `when`."""
    client = redis.Redis.from_url(url)
    client.flushall()
    client.close()
    when = as_when(cond) if isinstance(cond, Leaf | Node) else cond
    matcher = Matcher([contract(when, **contract_fields)])
    return asyncio.run(_replay(url, matcher, order))


def firings_when_first_holding(cond: Cond, order: list[Event]) -> list[list[str]]:
    """Expected: each day fires once, generation 0, at the event after which the
    reference first holds; duplicates and failed events add nothing."""
    done: dict[tuple[str, str], set[int]] = defaultdict(set)
    fired: set[str] = set()
    steps = []
    for item in order:
        if item.status == "success" and item.partition is not None:
            done[(item.dataset, item.partition)].add(item.metadata["n"])
        now = [d for d in DAYS if d not in fired and reference(cond, d, done)]
        fired.update(now)
        steps.append([f"baton:cond:{d}:0" for d in now])
    return steps


def all_ids(steps: list[list[str]]) -> list[str]:
    return [tid for step in steps for tid in step]


def on_redis(examples: int) -> settings:
    """Each example flushes the session's Redis itself, so the fixture's scope is fine."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )


@on_redis(80)
@given(data=st.data())
def test_a_contract_fires_once_exactly_when_its_condition_first_holds_in_any_order(
    redis_url: str, data: st.DataObject
) -> None:
    cond = data.draw(conditions(st.sampled_from(LEAVES)), label="when")
    events = data.draw(histories(cond, versions=1), label="events")
    first = data.draw(arrivals(events), label="first order")
    second = data.draw(st.permutations(first), label="second order")
    outcomes = []
    for order in (first, second):
        fired = replay(redis_url, cond, order)
        assert fired == firings_when_first_holding(cond, order)
        assert len(all_ids(fired)) == len(set(all_ids(fired))), "fired twice in a generation"
        outcomes.append(set(all_ids(fired)))
    assert outcomes[0] == outcomes[1], "the order of events changed what fired"


@settings(max_examples=300)
@given(data=st.data())
def test_the_python_twin_of_the_lua_evaluation_agrees_with_the_reference(
    data: st.DataObject,
) -> None:
    """`condition.holds` (used by explain) over the slots the events fill."""
    cond = data.draw(conditions(st.sampled_from(LEAVES)), label="when")
    events = data.draw(histories(cond, versions=2), label="events")
    day = data.draw(st.sampled_from(DAYS), label="contract partition")
    done: dict[tuple[str, str], set[int]] = defaultdict(set)
    present = set()
    for item in events:
        if item.status != "success" or item.partition is None:
            continue
        done[(item.dataset, item.partition)].add(item.metadata["n"])
        for leaf in LEAVES:
            if leaf.dataset == item.dataset and leaf.passes(item.metadata["n"]):
                present.add(slot(item.dataset, item.partition, leaf.where))
    tree = build_tree(contract(as_when(cond)), day)
    assert holds(tree, present) == reference(cond, day, done)


def test_failed_events_satisfy_no_branch(redis_url: str) -> None:
    cond = Node("any_of", (Leaf("a"), Node("all_of", (Leaf("b"), Leaf("b", where=POSITIVE)))))
    order = [
        event("a", DAY, "a-failed", 1, 1, "failed"),
        event("b", DAY, "b-failed", 2, 1, "failed"),
    ]
    assert replay(redis_url, cond, order) == [[], []]
    assert replay(redis_url, cond, [*order, event("a", DAY, "a1", 3, 0)])[-1] == [
        f"baton:cond:{DAY}:0"
    ]


# -- restatements and unpartitioned contracts: a model of each partition --------------


@dataclass
class PartitionModel:
    """What one contract partition should do, event by event (SPEC, Contracts): a slot
    keeps its latest success (an older one is stale); a newer success for a filled slot
    after a firing is a restatement; one event is one restatement, whatever number of the
    contract's inputs it feeds."""

    cond: Cond
    day: str
    policy: str
    latest: dict[tuple[str, str, str | None], int] = field(default_factory=dict)
    generation: int = 0
    fired: bool = False

    def slots_fed(self, item: Event) -> Iterator[tuple[str, str, str | None]]:
        for leaf in used_leaves(self.cond):
            wanted = shift(self.day, leaf.offset)
            matches = leaf.dataset == item.dataset and wanted == item.partition
            if matches and leaf.passes(item.metadata["n"]):
                yield (leaf.dataset, wanted, leaf.where)

    def feed(self, item: Event, second: int) -> str | None:
        if item.status != "success":
            return None
        fresh = {key for key in self.slots_fed(item) if self.latest.get(key, 0) < second}
        restated = fresh & self.latest.keys()
        self.latest.update(dict.fromkeys(fresh, second))
        if self.fired and restated and self.policy == "retrigger":
            self.generation, self.fired = self.generation + 1, False
        if self.fired or not evaluate(self.cond, self.filled):
            return None
        self.fired = True
        return f"baton:cond:{self.day}:{self.generation}"

    def filled(self, leaf: Leaf) -> bool:
        return (leaf.dataset, shift(self.day, leaf.offset), leaf.where) in self.latest


def occurred(item: Event) -> int:
    assert item.occurred_at is not None
    return int((item.occurred_at - BASE).total_seconds())


def modelled(cond: Cond, order: list[Event], policy: str) -> list[list[str]]:
    models = [PartitionModel(cond, day, policy) for day in DAYS]
    steps = []
    for item in order:
        fired = (m.feed(item, occurred(item)) for m in models)
        steps.append(sorted(tid for tid in fired if tid))
    return steps


@on_redis(60)
@given(data=st.data())
def test_restated_inputs_fire_the_next_generation_once_per_event(
    redis_url: str, data: st.DataObject
) -> None:
    cond = data.draw(conditions(st.sampled_from(LEAVES)), label="when")
    policy = data.draw(st.sampled_from(("retrigger", "ignore")), label="on_restatement")
    events = data.draw(histories(cond, versions=2), label="events")
    order = data.draw(arrivals(events), label="order")
    fired = replay(redis_url, cond, order, on_restatement=policy)
    assert fired == modelled(cond, order, policy)
    assert len(all_ids(fired)) == len(set(all_ids(fired))), "fired twice in a generation"


@dataclass
class UnpartitionedModel:
    """SPEC: fires when every required input has a new success event since the last
    trigger; one event counts once, whatever number of the contract's inputs it feeds."""

    cond: Cond
    latest: dict[tuple[str, str | None], int] = field(default_factory=dict)
    new: set[tuple[str, str | None]] = field(default_factory=set)
    generation: int = 0

    def feed(self, item: Event, second: int) -> str | None:
        if item.status != "success":
            return None
        for leaf in used_leaves(self.cond):
            key = (leaf.dataset, leaf.where)
            fed = leaf.dataset == item.dataset and leaf.passes(item.metadata["n"])
            if fed and self.latest.get(key, 0) < second:  # not a duplicate, not stale
                self.latest[key] = second
                self.new.add(key)
        if not evaluate(self.cond, lambda leaf: (leaf.dataset, leaf.where) in self.new):
            return None
        self.new.clear()
        self.generation += 1
        return f"baton:cond:_:{self.generation - 1}"


UNPARTITIONED_LEAVES = (
    Leaf("a"), Leaf("b"), Leaf(PARCELS), Leaf("b", where=POSITIVE), Leaf("b", where=HAS_N)
)  # fmt: skip


@on_redis(60)
@given(data=st.data())
def test_an_unpartitioned_contract_fires_on_new_events_since_its_last_trigger(
    redis_url: str, data: st.DataObject
) -> None:
    cond = data.draw(conditions(st.sampled_from(UNPARTITIONED_LEAVES)), label="when")
    events = data.draw(histories(cond, versions=3, partitions=(None,)), label="events")
    order = data.draw(arrivals(events), label="order")
    fired = replay(redis_url, cond, order, partitioned="none")
    model = UnpartitionedModel(cond)
    assert fired == [[tid] if (tid := model.feed(e, occurred(e))) else [] for e in order]


# -- one event, several slots of one partition ----------------------------------------
# A dataset read under two filters (or with and without one) is two slots, and the
# matcher records one event into each with its own call of record.lua. Found by the
# properties above: each call used to count as an event of its own, so one event could
# fire a partition twice.


def test_one_event_that_completes_the_condition_and_restates_an_input_fires_once(
    redis_url: str,
) -> None:
    cond = Node("all_of", (Leaf("b", where=POSITIVE), Leaf("b")))
    order = [event("b", DAY, "b1", 1, n=0), event("b", DAY, "b2", 2, n=1)]
    assert replay(redis_url, cond, order) == [[], [f"baton:cond:{DAY}:0"]]


def test_one_restating_event_read_under_two_filters_starts_one_generation(
    redis_url: str,
) -> None:
    cond = Node("all_of", (Leaf("b"), Leaf("b", where=HAS_N)))
    order = [event("b", DAY, f"b{v}", v, n=0) for v in (1, 2, 3)]
    assert replay(redis_url, cond, order) == [
        [f"baton:cond:{DAY}:0"], [f"baton:cond:{DAY}:1"], [f"baton:cond:{DAY}:2"]
    ]  # fmt: skip


def test_one_event_read_under_two_filters_fires_an_unpartitioned_contract_once(
    redis_url: str,
) -> None:
    cond = Node("any_of", (Leaf("b"), Leaf("b", where=HAS_N)))
    order = [event("b", None, f"b{v}", v, n=0) for v in (1, 2)]
    fired = replay(redis_url, cond, order, partitioned="none")
    assert fired == [["baton:cond:_:0"], ["baton:cond:_:1"]]


def test_one_dataset_read_daily_and_hourly_feeds_both_inputs(redis_url: str) -> None:
    when = {"all_of": ["a", {"dataset": "a", "partitioned": "hourly"}]}
    hours = [event("a", f"{DAY}T{h:02d}", f"a{h}", h + 2, n=0) for h in range(24)]
    fired = replay(redis_url, when, [event("a", DAY, "a-day", 1, n=0), *hours])
    assert all_ids(fired) == [f"baton:cond:{DAY}:0"]


def test_an_unpartitioned_trigger_carries_the_inputs_that_fired_it(redis_url: str) -> None:
    cond = Node("all_of", (Leaf("a"), Leaf("b")))
    order = [event("a", None, "a1", 1, n=0), event("b", None, "b1", 2, n=0)]
    assert replay(redis_url, cond, order, partitioned="none")[-1] == ["baton:cond:_:0"]

    async def inputs() -> dict[str, Any]:
        client = Redis.from_url(redis_url)
        store = RedisStore(client, Keys("cond"), max_backlog=10**9, dedup_ttl_s=60)
        record = await store.get_trigger("baton:cond:_:0")
        await client.aclose()
        assert record is not None
        return record.inputs

    held = asyncio.run(inputs())
    assert sorted(e["event_id"] for e in held.values()) == ["a1", "b1"]
