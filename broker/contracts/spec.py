"""The contract format (SPEC 'Contracts') as pydantic models, strict and frozen: what
validates a contract file's data (with the field and line of each error) and what
`baton schema` publishes. A running set keeps each contract in the compact form of
`model.py`, built from these once validated.

A condition is a dataset name, an `Input`, or `all_of`/`any_of` lists nested freely.
The trigger keeps its target-specific fields; `trigger_spec` (model.py) validates them
against the target's kind, which only the configuration knows.
"""

from __future__ import annotations

import re
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
from broker.core.partitions import Granularity

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


class Trigger(BaseModel):
    """`target` plus the fields of its kind; see `trigger_spec`."""

    model_config = ConfigDict(extra="allow", frozen=True)
    target: str = Field(min_length=1)


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
