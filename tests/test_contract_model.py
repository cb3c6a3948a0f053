"""The compact form a running set keeps contracts in (contracts/model.py) says what the
validated spec says: the same data, field for field and in the same order, as
pydantic dumps the spec; built back from that data, the same contract."""

from __future__ import annotations

import dataclasses
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from broker.contracts import spec
from broker.contracts.model import AllOf, Contract, Input, alike, iter_inputs
from broker.core.partitions import Granularity

ROOT = Path(__file__).resolve().parent.parent

RICH: dict[str, Any] = {
    "name": "rich.one-2",
    "description": "every field given",
    "owner": "team-a",
    "partitioned": "daily",
    "timezone": "Europe/Berlin",
    "partitions": ["2026-01-01", "2026-01-02"],
    "when": {"any_of": [
        "a",
        {"dataset": "b", "offset": -1, "where": "metadata.rows > 0"},
        {"all_of": ["c", {"dataset": "d", "partitioned": "hourly"}]},
    ]},
    "within": "1h30m",
    "deadline": "+1d09:00",
    "on_deadline": "trigger",
    "on_restatement": "ignore",
    "trigger": {"target": "hook", "body": {"day": "{{ partition }}", "none": None,
                                           "when": date(2026, 1, 1)}, "gone": None},
    "produces": ["x.y"],
    "retry": {"max_attempts": 3, "initial": "30s"},
}  # fmt: skip

DUMPS = [{}, {"exclude_defaults": True}, {"exclude_none": True},
         {"exclude_defaults": True, "exclude_none": True}]  # fmt: skip


def _written() -> list[dict[str, Any]]:
    """The contracts this repository ships, the README's among them."""
    found = []
    for path in sorted((ROOT / "contracts").glob("*.yaml")):
        found += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert found, "the example contracts are where they were"
    return found


@pytest.mark.parametrize("data", [RICH, {"name": "bare", "when": "a", "trigger": {"target": "t"}},
                                  *_written()], ids=lambda d: d["name"])  # fmt: skip
def test_the_compact_form_dumps_as_the_spec_and_reads_back_the_same(data: dict[str, Any]) -> None:
    valid = spec.Contract.model_validate(data)
    contract = Contract.parse(data)
    for options in DUMPS:
        dumped = valid.model_dump(mode="json", **options)
        ours = contract.as_data(**options)
        assert ours == dumped, options
        assert list(ours) == list(dumped), options  # in the order pydantic gives
    back = Contract.from_data(contract.as_data(exclude_defaults=True))
    assert back.as_data() == contract.as_data()
    assert Contract.from_data(back.as_data(exclude_defaults=True)) == back


def test_the_compact_form_is_frozen_slotted_and_typed_as_the_matcher_reads_it() -> None:
    contract = Contract.parse(RICH)
    with pytest.raises(dataclasses.FrozenInstanceError):
        contract.name = "other"  # type: ignore[misc]
    assert not hasattr(contract, "__dict__")
    inputs = list(iter_inputs(contract.when))
    assert [i.dataset for i in inputs] == ["a", "b", "c", "d"]
    assert all(type(i) is Input for i in inputs) and type(contract.when.any_of[2]) is AllOf  # type: ignore[union-attr]
    assert contract.partitions == ("2026-01-01", "2026-01-02") and contract.produces == ("x.y",)
    assert contract.within is not None and contract.within.total_seconds() == 5400
    assert contract.trigger.fields()["body"]["day"] == "{{ partition }}"
    assert contract.trigger.fields() is not contract.trigger.extra  # a copy to change


@pytest.mark.parametrize("broken", [
    {"when": "a", "trigger": {"target": "t"}},  # no name
    {"name": "n", "trigger": {"target": "t"}},  # no condition
    {"name": "n", "when": {"dataset": "a"}, "trigger": {}},  # no target
    {"name": 3, "when": {"dataset": "a"}, "trigger": {"target": "t"}},
    {"name": "n", "when": {"dataset": "a", "partitioned": "yearly"}, "trigger": {"target": "t"}},
])  # fmt: skip
def test_data_of_another_shape_is_refused_not_built(broken: dict[str, Any]) -> None:
    with pytest.raises((KeyError, TypeError, ValueError)):
        Contract.from_data(broken)


def _with_body(name: str, body: Any) -> dict[str, Any]:
    return {"name": name, "when": "a", "trigger": {"target": "t", "body": body, "n": [1]}}


def test_contracts_loaded_together_share_the_trigger_fields_they_have_alike() -> None:
    """Only what is alike in type and order too: it must render the same."""
    with alike():
        one, two = (Contract.parse(_with_body(n, {"day": "{{ partition }}"})) for n in "ab")
        others = [Contract.parse(_with_body(f"c{i}", body)) for i, body in enumerate(
            [{"x": 1}, {"x": True}, {"x": 1.0}, {"x": 1, "y": 2}, {"y": 2, "x": 1}])]  # fmt: skip
        back = Contract.from_data(one.as_data(exclude_defaults=True))
    assert one.trigger.extra is two.trigger.extra is back.trigger.extra
    bodies = [c.trigger.extra["body"] for c in others]
    assert len({id(b) for b in bodies}) == 5  # 1, True and 1.0; x-then-y and y-then-x
    assert [json.dumps(b) for b in bodies] == [
        '{"x": 1}',
        '{"x": true}',
        '{"x": 1.0}',
        '{"x": 1, "y": 2}',
        '{"y": 2, "x": 1}',
    ]
    assert all(c.trigger.extra["n"] is one.trigger.extra["n"] for c in others)  # within, too
    apart = Contract.parse(_with_body("d", {"day": "{{ partition }}"}))  # not while loading
    assert apart.trigger.extra == one.trigger.extra and apart.trigger.extra is not one.trigger.extra


def test_contracts_loaded_together_share_the_inputs_they_read_alike() -> None:
    def reading(name: str, *inputs: Any) -> Contract:
        when = {"all_of": list(inputs)}
        return Contract.parse({"name": name, "partitioned": "daily", "when": when,
                               "trigger": {"target": "t"}})  # fmt: skip

    hourly = {"dataset": "b", "partitioned": "hourly"}
    with alike():
        one = reading("one", "a", hourly, {"dataset": "c", "offset": -1})
        two = reading("two", "a", hourly, {"dataset": "c", "offset": 0})
        back = Contract.from_data(one.as_data(exclude_defaults=True))
    ones, twos, backs = (list(iter_inputs(c.when)) for c in (one, two, back))
    assert ones[0] is twos[0] is backs[0] and ones[1] is twos[1] is backs[1]
    assert ones[2] is not twos[2] and ones[2] is backs[2]  # another offset: another input
    assert type(backs[1].partitioned) is Granularity
