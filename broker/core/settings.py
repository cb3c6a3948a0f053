"""Baton's one settings object: `baton.yaml`, then `BATON_*` environment overrides.

Built once at an entry point (CLI, app factory) and passed down; nothing reads the
environment deep inside. `${VAR}` in the YAML is replaced from the environment, so
secrets stay out of files; secret fields are `SecretStr` and never printed.
"""

from __future__ import annotations

import hashlib
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from broker.core.durations import Duration
from broker.core.errors import ConfigError
from broker.core.secrets import VAR


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BreakerSettings(_Strict):
    """A target's circuit breaker: after `failures` transient failures in a row (of any
    triggers) it opens, and its triggers wait, without calls, until a single probe
    succeeds; the probe goes out after `cooldown`, doubling up to `max_cooldown` while
    it keeps failing. `failures: 0` turns it off."""

    failures: int = Field(5, ge=0)
    cooldown: Duration = timedelta(seconds=5)
    max_cooldown: Duration = timedelta(seconds=15)


class _Target(_Strict):
    url: str
    timeout: float = Field(10.0, gt=0)
    # Downstream runs started and not yet finished, at most; starts per second, at most.
    # Triggers over a limit wait durably (oldest first) and are never dropped.
    max_in_flight: int | None = Field(None, ge=1)
    max_starts_per_second: float | None = Field(None, gt=0)
    breaker: BreakerSettings = BreakerSettings()
    # Runs of this target one worker looks at at once, to follow them to their end.
    track_concurrency: int = Field(32, ge=1, le=1000)


class WebhookTarget(_Target):
    kind: Literal["webhook"]
    secret: SecretStr | None = None
    headers: dict[str, str] = {}


class AirflowTarget(_Target):
    kind: Literal["airflow"]
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    unpause: bool = False


class DagsterTarget(_Target):
    kind: Literal["dagster"]
    token: SecretStr | None = None


class PrefectTarget(_Target):
    kind: Literal["prefect"]
    auth_string: SecretStr | None = None
    api_key: SecretStr | None = None


TargetConfig = Annotated[
    WebhookTarget | AirflowTarget | DagsterTarget | PrefectTarget,
    Field(discriminator="kind"),
]


class ApiSettings(_Strict):
    # How old a signed request's X-Baton-Timestamp may be; a signature is accepted once.
    signature_window: Duration = timedelta(minutes=5)
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    # HTTP processes on the port (SO_REUSEPORT): the first starts and stops the others.
    workers: int = Field(1, ge=1, le=64)
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    max_batch: int = Field(1000, ge=1, le=100_000)
    # GET /metrics without a token even when credentials are configured: a deliberate
    # opt-in for scrapers that cannot send one.
    public_metrics: bool = False
    # How long a browser stays signed in to the status page.
    session_ttl: Duration = timedelta(hours=12)
    # Slow clients: a request's head and its body each have this long to arrive (408
    # and the connection closed past it); at most this many requests may be sending
    # their bodies at once, and uvicorn holds at most `max_connections` (503 beyond).
    head_timeout: Duration = timedelta(seconds=10)
    body_timeout: Duration = timedelta(seconds=15)
    max_pending_bodies: int = Field(256, ge=1)
    max_connections: int = Field(2048, ge=16)


class RetrySettings(_Strict):
    """Transient failures are retried with exponential backoff and jitter until the
    trigger is `max_age` old (24 h, as EventBridge does), or `max_attempts` have been
    made when that is set: 1 s, 2 s, 4 s ... 256 s, then every 5 min, about 295
    attempts in a day (fewer behind an open circuit breaker, which calls nothing)."""

    initial: Duration = timedelta(seconds=1)
    factor: float = Field(2.0, ge=1.0)
    jitter: float = Field(0.2, ge=0.0, le=1.0)
    max_delay: Duration = timedelta(minutes=5)
    max_age: Duration = timedelta(hours=24)
    max_attempts: int | None = Field(None, ge=1)


class _Credential(_Strict):
    """A bearer token given plain (from `${VAR}`) or as its SHA-256 only."""

    name: str = Field(min_length=1, max_length=128)
    token: SecretStr | None = None
    token_sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")

    def token_digest(self) -> str | None:
        """The lower-case SHA-256 hex of the token, whichever way it was given."""
        if self.token is not None:
            return hashlib.sha256(self.token.get_secret_value().encode()).hexdigest()
        return self.token_sha256.lower() if self.token_sha256 else None


Role = Literal["viewer", "operator", "admin"]


class PrincipalSettings(_Credential):
    """A person or tool that reads or operates Baton: `viewer` reads (the status page
    and /metrics included), `operator` also runs backfills, retries dead letters,
    reloads and pauses contracts, `admin` may do everything, publishing included."""

    role: Role

    @model_validator(mode="after")
    def _one_token(self) -> PrincipalSettings:
        if (self.token is None) == (self.token_sha256 is None):
            raise ValueError(f"principal {self.name!r}: give exactly one of token or token_sha256")
        return self


class ProducerSettings(_Credential):
    """A producer: its bearer token (or only the token's SHA-256), and what it may
    publish: dataset globs and, optionally, a partition glob."""

    # For tools that can sign a webhook but not hold a bearer token.
    hmac_secret: SecretStr | None = None
    datasets: list[str] = Field(["*"], min_length=1)
    partitions: str | None = None

    @model_validator(mode="after")
    def _one_credential(self) -> ProducerSettings:
        given = [self.token, self.token_sha256, self.hmac_secret]
        if sum(c is not None for c in given) != 1:
            raise ValueError(
                f"producer {self.name!r}: give exactly one of token, token_sha256 or hmac_secret"
            )
        return self


class OpenLineageSettings(_Strict):
    """How OpenLineage run events become Baton events (see broker/ingest/openlineage.py)."""

    datasets: dict[str, str] = {}
    partition_from: list[Literal["facet", "nominal_time", "name"]] = ["facet", "nominal_time"]
    partition_facet: str = "partition"
    nominal_granularity: Literal["hourly", "daily", "weekly", "monthly"] = "daily"
    name_pattern: str | None = None

    @field_validator("name_pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                compiled = re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from exc
            if "partition" not in compiled.groupindex:
                raise ValueError("needs a (?P<partition>...) group")
        return value


class AlertSink(_Strict):
    kind: Literal["webhook"] = "webhook"
    url: str
    secret: SecretStr | None = None


class ContractLimits(_Strict):
    """What loading the contracts folder may cost (broker.contracts.files.LoadLimits):
    each refused with a `file:line` error naming it."""

    max_file_bytes: int = Field(1 << 20, ge=1024)
    max_folder_bytes: int = Field(64 << 20, ge=1024)
    max_contracts: int = Field(50_000, ge=1)
    max_values: int = Field(100_000, ge=100)
    max_folder_values: int = Field(2_000_000, ge=100)
    max_depth: int = Field(64, ge=8, le=200)


class CheckSettings(_Strict):
    """Rules a team adds on top of the contract format, for `baton check` and every load
    (a live reload included, so a set that breaks them is refused as a whole)."""

    require_owner: bool = False


class OwnerSettings(_Strict):
    """What Baton knows of a team that owns contracts: where its alerts go."""

    # Empty: the owner is known (for `check.require_owner`) but alerts go to `alerts`.
    alerts: list[AlertSink] = []


class WorkerSettings(_Strict):
    # How long an entry may sit un-acked with a consumer before another worker takes
    # it over: long enough for a slow target call, short enough to recover quickly.
    claim_idle: Duration = timedelta(seconds=30)
    # How many events a worker reads per XREADGROUP call.
    read_count: int = Field(100, ge=1)
    # How many entries the reclaim loop takes per XAUTOCLAIM call.
    reclaim_count: int = Field(100, ge=1)
    # How many target calls one worker has in flight at once.
    dispatch_concurrency: int = Field(16, ge=1, le=1000)
    # Following a downstream run: first look after this, then doubling up to the cap.
    track_initial: Duration = timedelta(seconds=1)
    track_max_delay: Duration = timedelta(seconds=60)


class Settings(BaseSettings):
    """Everything Baton can be told; see SPEC 'Configuration'."""

    model_config = SettingsConfigDict(
        env_prefix="BATON_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    redis_url: str | None = None
    data_dir: Path = Path(".baton")
    contracts: Path = Path("contracts")
    namespace: str = Field("baton", pattern=r"^[A-Za-z0-9_.-]+$")
    api: ApiSettings = ApiSettings()
    worker: WorkerSettings = WorkerSettings()
    targets: dict[str, TargetConfig] = {}
    producers: list[ProducerSettings] = []
    # Who may read and operate Baton (see PrincipalSettings); producers only publish.
    principals: list[PrincipalSettings] = []
    # The environment variables contracts may read as `${VAR}` (globs); none by
    # default: a contract's author is not thereby trusted with the worker's secrets.
    contract_env: list[str] = []
    openlineage: OpenLineageSettings = OpenLineageSettings()
    alerts: list[AlertSink] = []
    # Per-owner sinks: alerts about a contract go to its owner's, else to `alerts`.
    owners: dict[str, OwnerSettings] = {}
    check: CheckSettings = CheckSettings()
    contract_limits: ContractLimits = ContractLimits()
    retry: RetrySettings = RetrySettings()
    auth: Literal["on", "off"] = "on"
    # The events stream's backlog limit: past it, ingestion answers 429.
    max_backlog: int = Field(1_000_000, ge=1)
    # How long an event_id is remembered for deduplication at ingestion.
    dedup_ttl: Duration = timedelta(days=7)
    # How long matched events stay in the events stream, for `baton replay`.
    events_retention: Duration = timedelta(days=7)
    # How long a removed contract's partition state is kept (adding it back resumes it).
    contracts_retention: Duration = timedelta(days=30)
    # How long settled state stays readable (explain, the console, `baton triggers`): a
    # partition's match state after its last write, a trigger's record after its run
    # ended or it was dead-lettered, dead letters themselves. Then it reads "expired".
    history_retention: Duration = timedelta(days=30)
    # How long a partition's fired-marker (its last generation fired, ~70 B) outlives
    # its firing: within it, an event for an expired partition is a restatement and a
    # trigger id is never reissued. Past it too, the partition is as new.
    markers_retention: Duration = timedelta(days=400)

    @model_validator(mode="after")
    def _tokens_name_one(self) -> Settings:
        """A token names one producer or one principal: shared, it would be ambiguous
        which of them a request speaks for."""
        seen: dict[str, str] = {}
        for kind, items in (("producers", self.producers), ("principals", self.principals)):
            for i, item in enumerate(items):
                digest = item.token_digest()
                where = f"{kind}[{i}] ({item.name})"
                if digest is not None and digest in seen:
                    raise ValueError(f"{where} has the same token as {seen[digest]}")
                if digest is not None:
                    seen[digest] = where
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment wins over the file, which arrives as init kwargs.
        return env_settings, init_settings


def _interpolate(value: Any, env: dict[str, str], where: str) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, env, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name not in env and default is not None:
                return default
            if name not in env:
                raise ConfigError(f"{where.lstrip('.')}: environment variable {name} is not set")
            return env[name]

        return VAR.sub(sub, value)
    return value


def load_settings(path: str | Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Read `path` (or `$BATON_CONFIG`, or `./baton.yaml` if present) into Settings."""
    env = dict(os.environ) if env is None else env
    chosen = path or env.get("BATON_CONFIG")
    file = Path(chosen) if chosen else Path("baton.yaml")
    data: dict[str, Any] = {}
    if file.exists():
        try:
            loaded = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{file}: not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{file}: the top level must be a mapping")
        data = _interpolate(loaded, env, "")
        base = file.parent
        for key in ("contracts", "data_dir"):
            if key in data and not Path(str(data[key])).is_absolute():
                data[key] = str(base / str(data[key]))
    elif chosen:
        raise ConfigError(f"{file}: no such configuration file")
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, file)) from exc


def _describe(exc: ValidationError, file: Path) -> str:
    lines = [f"{file}: invalid configuration"]
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"])
        lines.append(f"  {field}: {err['msg']}")
    return "\n".join(lines)
