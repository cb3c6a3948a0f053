"""The contract format (SPEC 'Contracts') as pydantic models, strict and frozen.

A condition is a dataset name, an `Input`, or `all_of`/`any_of` lists nested freely.
The trigger keeps its target-specific fields; `trigger_spec` validates them against the
target's kind, which only the configuration knows.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from broker.core.durations import Duration
from broker.core.partitions import Calendar, Granularity

_DATASET = re.compile(r"^[\x20-\x7e\u00a0-\U0010ffff]{1,256}$")
DEADLINE = re.compile(r"^(?:\+(?P<rel>(?:\d+[dhms])+))?(?P<at>(?:[01]\d|2[0-3]):[0-5]\d)?$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _dataset(value: str) -> str:
    if not _DATASET.match(value):
        raise ValueError("a dataset name is 1 to 256 printable characters")
    return value


class Input(_Strict):
    """One dataset the contract waits for, with its own granularity, offset and filter."""

    dataset: str
    partitioned: Granularity | None = None
    offset: int = Field(0, ge=-1000, le=1000)
    where: str | None = Field(None, max_length=1000)

    @field_validator("dataset")
    @classmethod
    def _dataset_name(cls, value: str) -> str:
        return _dataset(value)

    def granularity(self, contract: Contract) -> Granularity:
        return self.partitioned or contract.partitioned


class AllOf(_Strict):
    all_of: list[Condition] = Field(min_length=1)


class AnyOf(_Strict):
    any_of: list[Condition] = Field(min_length=1)


def _as_input(value: Any) -> Any:
    return {"dataset": value} if isinstance(value, str) else value


def _condition_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "all_of" if "all_of" in value else "any_of" if "any_of" in value else "input"
    if isinstance(value, AllOf | AnyOf):
        return "all_of" if isinstance(value, AllOf) else "any_of"
    return "input"


Condition = Annotated[
    Annotated[Input, Tag("input")]
    | Annotated[AllOf, Tag("all_of")]
    | Annotated[AnyOf, Tag("any_of")],
    Discriminator(_condition_kind),
    BeforeValidator(_as_input),
]


def iter_inputs(condition: Condition) -> Iterator[Input]:
    """Every Input of a condition tree, depth first (without a generator per node: a
    start over 100,000 contracts walks every tree)."""
    found: list[Input] = []
    stack: list[Condition] = [condition]
    while stack:
        node = stack.pop()
        if type(node) is Input:
            found.append(node)
        else:
            children = node.all_of if type(node) is AllOf else node.any_of  # type: ignore[union-attr]
            stack += reversed(children)
    return iter(found)


class Trigger(BaseModel):
    """`target` plus the fields of its kind; see `trigger_spec`."""

    model_config = ConfigDict(extra="allow", frozen=True)
    target: str = Field(min_length=1)

    def fields(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class WebhookTrigger(_Strict):
    target: str
    url: str | None = None
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[str, str] = {}
    body: Any = None


class AirflowTrigger(_Strict):
    target: str
    dag_id: str | None = None
    asset_event: str | None = None
    conf: dict[str, Any] = {}
    logical_date: str | None = None
    partition_key: str | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _one_mode(self) -> AirflowTrigger:
        if (self.dag_id is None) == (self.asset_event is None):
            raise ValueError("give exactly one of dag_id or asset_event")
        return self


class DagsterTrigger(_Strict):
    target: str
    job: str | None = None
    location: str | None = None
    repository: str = "__repository__"
    assets: list[str] | None = None
    partition: str | None = None
    run_config: dict[str, Any] = {}
    tags: dict[str, str] = {}

    @model_validator(mode="after")
    def _one_mode(self) -> DagsterTrigger:
        if (self.job is None) == (self.assets is None):
            raise ValueError("give exactly one of job or assets")
        if self.job is not None and self.location is None:
            raise ValueError("a job needs its code location: location")
        return self


class PrefectTrigger(_Strict):
    target: str
    deployment: str
    parameters: dict[str, Any] = {}
    tags: list[str] = []


TRIGGER_KINDS: dict[str, type[BaseModel]] = {
    "webhook": WebhookTrigger,
    "airflow": AirflowTrigger,
    "dagster": DagsterTrigger,
    "prefect": PrefectTrigger,
}


class RetryOverride(_Strict):
    initial: Duration | None = None
    factor: float | None = Field(None, ge=1.0)
    jitter: float | None = Field(None, ge=0.0, le=1.0)
    max_delay: Duration | None = None
    max_age: Duration | None = None
    max_attempts: int | None = Field(None, ge=1)


class Contract(_Strict):
    """When `when` holds for partition P, start `trigger`; alert if not by `deadline`."""

    name: str = Field(pattern=r"^[a-z0-9_.-]+$", min_length=1, max_length=128)
    description: str = ""
    owner: str | None = None
    partitioned: Granularity = Granularity.NONE
    timezone: str = "UTC"
    partitions: list[str] | None = None
    when: Condition
    within: Duration | None = None
    deadline: str | None = None
    on_deadline: Literal["alert", "trigger"] = "alert"
    on_restatement: Literal["retrigger", "ignore"] = "retrigger"
    trigger: Trigger
    produces: tuple[str, ...] = ()  # immutable: one empty default for all, not a copy each
    retry: RetryOverride | None = None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"{value!r} is not a known timezone (e.g. UTC, Europe/Berlin)"
            ) from exc
        return value

    @field_validator("deadline")
    @classmethod
    def _deadline(cls, value: str | None) -> str | None:
        if value is not None and (not value or not DEADLINE.match(value)):
            raise ValueError(f"{value!r} is not a deadline like +7h30m, 09:00 or +1d09:00")
        return value

    @field_validator("produces")
    @classmethod
    def _produces(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_dataset(v) for v in value)

    def inputs(self) -> list[Input]:
        return list(iter_inputs(self.when))

    def input_datasets(self) -> set[str]:
        return {i.dataset for i in iter_inputs(self.when)}


# Each model instance keeps the set of the fields its input gave (`model_fields_set`): a
# set of its own, 200 to 700 bytes, and alike in most contracts. Contracts are frozen and
# nothing changes such a set once validated (a copy gets one of its own), so instances
# with equal sets share one: 1.8 of the 6.2 KB a contract took, at 10,000 loaded.
_FIELD_SETS: dict[tuple[type, frozenset[str]], set[str]] = {}


def share_field_sets(contract: Contract) -> None:
    """Give `contract` and the models inside it (its condition tree, trigger and retry:
    walked by their places, not by every value, as a start restores 100,000) the shared
    set of their fields."""
    todo: list[BaseModel] = [contract, contract.trigger, contract.when]
    if contract.retry is not None:
        todo.append(contract.retry)
    while todo:
        item = todo.pop()
        kind = type(item)
        if kind is AllOf:
            todo += item.all_of  # type: ignore[attr-defined]
        elif kind is AnyOf:
            todo += item.any_of  # type: ignore[attr-defined]
        own = item.__pydantic_fields_set__
        shared = _FIELD_SETS.setdefault((kind, frozenset(own)), own)
        if shared is not own:
            object.__setattr__(item, "__pydantic_fields_set__", shared)


def trigger_spec(contract: Contract, kind: str) -> BaseModel:
    """The trigger validated against its target's kind; raises pydantic's ValidationError."""
    model = TRIGGER_KINDS[kind]
    return model.model_validate({"target": contract.trigger.target, **contract.trigger.fields()})


def contract_json_schema() -> dict[str, Any]:
    """JSON Schema for editors: the trigger shown as one of the four kinds."""
    schema = Contract.model_json_schema()
    defs = schema.setdefault("$defs", {})
    for kind, model in TRIGGER_KINDS.items():
        sub = model.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(sub.pop("$defs", {}))
        sub["title"] = f"{kind} trigger"
        defs[model.__name__] = sub
    schema["properties"]["trigger"] = {
        "anyOf": [{"$ref": f"#/$defs/{m.__name__}"} for m in TRIGGER_KINDS.values()]
    }
    schema["properties"]["when"]["description"] = (
        "a dataset name, {dataset, partitioned, offset, where},"
        " or {all_of: [...]} / {any_of: [...]}"
    )
    # A bare string is a dataset name (`_as_input`), which the model's own schema omits.
    defs["Input"] = {
        "anyOf": [
            {"type": "string", "minLength": 1, "maxLength": 256, "title": "Dataset name"},
            defs["Input"],
        ]
    }
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Baton contract"
    return schema


def input_calendar(contract: Contract, item: Input) -> Calendar:
    """The calendar an input's partitions are keyed in (its own, or the contract's)."""
    return _calendar(item.partitioned or contract.partitioned, contract.timezone)


def contract_calendar(contract: Contract) -> Calendar:
    return _calendar(contract.partitioned, contract.timezone)


@lru_cache(maxsize=4096)
def _calendar(granularity: Granularity, timezone: str) -> Calendar:
    """One calendar object per (granularity, timezone): the index holds two for each of
    the 300,000 inputs of 100,000 contracts."""
    return Calendar(Granularity(granularity), timezone)
