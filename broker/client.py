"""BatonClient: publish dataset-completion events from any Python process.

    client = BatonClient(url="http://127.0.0.1:8000")        # over HTTP
    client = BatonClient(redis_url="redis://127.0.0.1:6379")  # straight to the stream
    client.publish("warehouse.orders", partition="2026-11-23", metadata={"row_count": 10})

Every event gets its `event_id` before the first attempt, so a retry (ours, or the
caller's) can never publish it twice. `AsyncBatonClient` is the same, for asyncio code.

Over HTTP the answer says where each event goes (`result.routes`: the contracts it
feeds, and those reading its dataset that it cannot, with the reason). With
`strict=True` an event that feeds nothing, or cannot feed a contract reading its
dataset, raises `Unrouted` once Baton has the events: they are facts, so they are kept.

    PublishError         Baton refused the events (`problem`: its RFC 9457 answer)
    ├── BatonUnavailable not reachable, or busy, through every attempt
    └── Unrouted         strict: accepted, but not every event goes where it is read

Over HTTP the client needs only httpx and pydantic, so it also runs inside an
orchestrator's environment (`pip install --no-deps baton httpx`); redis is imported
only for `redis_url=`.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from pydantic import ValidationError

from broker.core.errors import BacklogFull, BatonError, EventRejected
from broker.core.events import Encoded, Event, encode, field_errors, stream_text
from broker.ingest.intake import EventRoute, IngestResult, ingest_encoded

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from broker.state.redis_store import RedisStore

T = TypeVar("T")
EventLike = Event | Mapping[str, Any]
_CHUNK = 1000
_IN_FLIGHT = 4


class PublishError(BatonError):
    """Baton refused the events (or, `Unrouted`, took them but not where they are read);
    `problem` holds its RFC 9457 answer when there is one."""

    def __init__(self, message: str, problem: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.problem = problem or {}


class BatonUnavailable(PublishError):
    """Baton could not be reached (or stayed busy) through every attempt."""


class Unrouted(PublishError):
    """Strict publishing: Baton accepted the events (and keeps them), but `reasons` say
    which feed no contract, or cannot feed one that reads their dataset."""

    def __init__(self, result: IngestResult, reasons: list[str]) -> None:
        shown = "; ".join(reasons[:5]) + (
            f"; and {len(reasons) - 5} more" if len(reasons) > 5 else ""
        )
        super().__init__(f"accepted, but not routed: {shown}")
        self.result = result
        self.reasons = reasons


def check_routes(result: IngestResult) -> None:
    """Raise Unrouted unless every event of `result` feeds every contract that reads its
    dataset (and at least one); an answer without routes cannot tell, so it raises too."""
    if result.routes is None:
        reasons = ["the answer does not say which contracts the events feed (a Baton "
                   "older than strict publishing, or straight to Redis)"]  # fmt: skip
    else:
        reasons = result.unrouted()
    if reasons:
        raise Unrouted(result, reasons)


class _Retryable(Exception):
    pass


def make_event(
    dataset: str,
    partition: str | None = None,
    *,
    status: str = "success",
    metadata: Mapping[str, Any] | None = None,
    event_id: str | None = None,
    producer: str | None = None,
    occurred_at: datetime | None = None,
) -> Event:
    return Event.model_validate(
        {
            "dataset": dataset,
            "partition": partition,
            "status": status,
            "metadata": dict(metadata or {}),
            "event_id": event_id or _new_id(),
            "producer": producer,
            "occurred_at": occurred_at,
        }
    )


def _prepare(events: Iterable[EventLike], to_stream: bool) -> list[Encoded]:
    """Validated and encoded, each with its `event_id` fixed before the first attempt, as
    the stream keeps it (`to_stream`, straight to Redis) or as JSON (a request's); all or
    nothing: EventRejected names every bad field as `events[i].field`."""
    encoding = stream_text if to_stream else encode
    prepared: list[Encoded] = []
    errors: list[tuple[str, str]] = []
    for index, item in enumerate(events):
        if isinstance(item, Event):
            event = item if item.event_id else item.model_copy(update={"event_id": _new_id()})
        else:
            data = dict(item)
            if not data.get("event_id"):
                data["event_id"] = _new_id()
            try:
                event = Event.model_validate(data)
            except ValidationError as exc:
                errors += field_errors(exc, f"events[{index}].")
                continue
        prepared.append(encoding(event))
    if errors:
        raise EventRejected(errors)
    return prepared


def _new_id() -> str:
    return f"client-{uuid.uuid4().hex}"


class AsyncBatonClient:
    def __init__(
        self,
        url: str | None = None,
        *,
        redis_url: str | None = None,
        token: str | None = None,
        namespace: str = "baton",
        timeout: float = 10.0,
        attempts: int = 5,
        strict: bool = False,
        dedup_ttl: float = 7 * 86400,
    ) -> None:
        """`dedup_ttl` (seconds, `redis_url=` only): how long Redis remembers an
        event_id this client wrote; give it the broker's `dedup_ttl` when that is not
        the default 7 days (over HTTP, the broker applies its own)."""
        if (url is None) == (redis_url is None):
            raise ValueError("give exactly one of url= or redis_url=")
        if strict and redis_url:
            raise ValueError("strict=True needs url=: only Baton's API knows the contracts")
        self.url = url.rstrip("/") if url else None
        self.attempts = attempts
        self.strict = strict
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(timeout=timeout, headers=headers) if url else None
        self._redis: Redis | None = None
        self._store: RedisStore | None = None
        if redis_url:
            from redis.asyncio import Redis  # noqa: PLC0415

            from broker.state.keys import Keys  # noqa: PLC0415
            from broker.state.redis_store import RedisStore  # noqa: PLC0415

            self._redis = Redis.from_url(redis_url, socket_timeout=timeout)
            self._store = RedisStore(
                self._redis, Keys(namespace), max_backlog=10**12, dedup_ttl_s=int(dedup_ttl)
            )

    async def publish(
        self, dataset: str, partition: str | None = None, **fields: Any
    ) -> IngestResult:
        try:
            event = make_event(dataset, partition, **fields)
        except ValidationError as exc:  # as publish_many says it: EventRejected
            raise EventRejected(field_errors(exc, "")) from exc
        return await self.publish_many([event])

    async def publish_many(self, events: Iterable[EventLike]) -> IngestResult:
        """Publish events in chunks of 1,000; returns accepted and duplicate ids, and
        over HTTP where each event goes. Strict: raises Unrouted after Baton has them."""
        prepared = _prepare(events, self._store is not None)
        chunks = [prepared[i : i + _CHUNK] for i in range(0, len(prepared), _CHUNK)]
        # A few chunks in flight at once, so encoding one overlaps sending another.
        gate = asyncio.Semaphore(_IN_FLIGHT)

        async def send(chunk: list[Encoded]) -> IngestResult:
            async with gate:
                return await self._retrying(lambda: self._send(chunk))

        parts = await asyncio.gather(*(send(c) for c in chunks))
        routed = all(part.routes is not None for part in parts)
        result = IngestResult(routes=[] if routed else None)
        for part in parts:
            result.accepted.extend(part.accepted)
            result.duplicates.extend(part.duplicates)
            if result.routes is not None and part.routes is not None:
                result.routes.extend(part.routes)
        if self.strict:
            check_routes(result)
        return result

    async def _send(self, events: list[Encoded]) -> IngestResult:
        if self._store is not None:
            from redis.exceptions import ConnectionError as RedisDown  # noqa: PLC0415
            from redis.exceptions import TimeoutError as RedisSlow  # noqa: PLC0415

            try:
                return await ingest_encoded(self._store, events)
            except (RedisDown, RedisSlow, BacklogFull) as exc:
                raise _Retryable(str(exc)) from exc
        return await self._post(events)

    async def _post(self, events: list[Encoded]) -> IngestResult:
        assert self._http is not None
        body = '{"events":[' + ",".join(e[1] for e in events) + "]}"
        headers = {"Content-Type": "application/json"}
        try:
            response = await self._http.post(
                f"{self.url}/v1/events", content=body.encode(), headers=headers
            )
        except httpx.TransportError as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise _Retryable(f"HTTP {response.status_code}: {response.text[:200]}")
        if response.status_code != 202:
            problem = _json_or_empty(response)
            raise PublishError(
                f"HTTP {response.status_code}: {problem.get('detail', response.text)}", problem
            )
        data = response.json()
        routes = [EventRoute.from_dict(r) for r in data["routes"]] if "routes" in data else None
        return IngestResult(data["accepted"], data["duplicates"], routes)

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        for attempt in range(1, self.attempts + 1):
            try:
                return await call()
            except _Retryable as exc:
                if attempt == self.attempts:
                    raise BatonUnavailable(f"gave up after {attempt} attempts: {exc}") from exc
                await asyncio.sleep(min(5.0, 0.1 * 2**attempt) * random.uniform(0.8, 1.2))
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        if self._redis is not None:
            await self._redis.aclose()

    async def __aenter__(self) -> AsyncBatonClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _json_or_empty(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


class BatonClient:
    """The synchronous client: AsyncBatonClient run on a private event loop.

    Called from a thread that already runs an event loop (a sync hook inside async
    code), it runs its loop on a helper thread instead of failing."""

    def __init__(self, url: str | None = None, **kwargs: Any) -> None:
        self._client = AsyncBatonClient(url, **kwargs)  # first: if it refuses, no loop leaks
        self._loop = asyncio.new_event_loop()

    def publish(self, dataset: str, partition: str | None = None, **fields: Any) -> IngestResult:
        return self._run(self._client.publish(dataset, partition, **fields))

    def publish_many(self, events: Iterable[EventLike]) -> IngestResult:
        return self._run(self._client.publish_many(events))

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self._loop.run_until_complete(work)
        with ThreadPoolExecutor(1, thread_name_prefix="baton-client") as pool:
            return pool.submit(self._loop.run_until_complete, work).result()

    def close(self) -> None:
        self._run(self._client.aclose())
        self._loop.close()

    def __enter__(self) -> BatonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
