"""No input at the ways in earns a 500, and nothing bad is stored: every way in (POST
/v1/events as JSON, CloudEvents structured, batch and binary, /v1/openlineage) answers
400, 415 or 422 with a problem naming the field, writes nothing of what it refuses, and
keeps what it accepted before intact. Through the real app (its `EventsFastPath`
included) on a real Redis; hypothesis fuzzes each way in; a real `baton run` takes the
worst cases over a socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from broker.api.app import create_app
from broker.client import BatonClient
from broker.core.errors import EventRejected
from broker.core.events import from_wire
from broker.core.settings import Settings
from broker.matching.loaded import load_checked
from broker.runtime import Runtime
from tests.conftest import Cluster

CONTRACT = """
name: revenue_report
partitioned: daily
when: warehouse.orders
trigger: {target: hook}
"""
TOKEN = "fuzz-token"
KEEPER = {"dataset": "warehouse.orders", "partition": "2026-11-23", "event_id": "keep-me",
          "metadata": {"row_count": 12345, "note": "caf\u00e9 \U0001f600"}}  # fmt: skip


def envelope(data: str) -> str:
    return '{"specversion":"1.0","id":"ce-1","source":"urn:test","type":"t","data":' + data + "}"


def run_event(custom: str) -> str:
    """A COMPLETE run event with `custom` as a facet Baton does not read."""
    head = ('{"eventType":"COMPLETE","eventTime":"2026-11-23T05:00:00Z","producer":"p",'
            '"run":{"runId":"r-1"},"job":{"namespace":"j","name":"load"},'
            '"outputs":[{"namespace":"n","name":"orders","facets":{"custom":')  # fmt: skip
    return head + custom + "}}]}"


@dataclass(frozen=True)
class Way:
    """One way in: where to post, with what headers, the event text wrapped how, and
    the prefix a field inside the event gets in the answer."""

    name: str
    path: str
    headers: dict[str, str]
    wrap: Callable[[str], str]
    prefix: str
    carries_events: bool = True  # the body's object is a Baton event (not OpenLineage's)


BINARY = {"ce-specversion": "1.0", "ce-id": "b-1", "ce-source": "urn:test", "ce-type": "t"}
WAYS = [
    Way("json", "/v1/events", {"content-type": "application/json"}, lambda t: t, ""),
    Way("structured", "/v1/events", {"content-type": "application/cloudevents+json"},
        envelope, "data."),
    Way("batch", "/v1/events", {"content-type": "application/cloudevents-batch+json"},
        lambda t: f"[{envelope(t)}]", "[0].data."),
    Way("binary", "/v1/events", {**BINARY, "content-type": "application/json"}, lambda t: t, ""),
    Way("openlineage", "/v1/openlineage", {"content-type": "application/json"},
        run_event, "outputs[0].facets.custom.", carries_events=False),
]  # fmt: skip
EVENT_WAYS = [w for w in WAYS if w.carries_events]
Api = tuple[httpx.AsyncClient, Runtime]


def make_settings(tmp_path: Path, redis_url: str, **extra: Any) -> Settings:
    (tmp_path / "contracts").mkdir(exist_ok=True)
    (tmp_path / "contracts" / "report.yaml").write_text(CONTRACT)
    return Settings(
        redis_url=redis_url,
        contracts=tmp_path / "contracts",
        targets={"hook": {"kind": "webhook", "url": "http://127.0.0.1:9/"}},
        **extra,
    )


@pytest.fixture
async def api(tmp_path: Path, redis_url: str) -> AsyncIterator[Api]:
    settings = make_settings(tmp_path, redis_url)
    runtime = await Runtime.open(settings)
    app = create_app(runtime, load_checked(settings))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://baton") as client:
        kept = await client.post("/v1/events", json=KEEPER)
        assert kept.status_code == 202, kept.text
        yield client, runtime
        assert await stored(runtime) == [KEEPER]  # intact, and nothing refused was written
    await runtime.close()


async def forget_all_but_the_keeper(runtime: Runtime) -> None:
    """For a test that accepts events: the fixture's check then holds again."""
    entries = await runtime.redis.xrange("baton:events")
    await runtime.redis.xdel("baton:events", *[entry_id for entry_id, _ in entries[1:]])


async def stored(runtime: Runtime) -> list[dict[str, Any]]:
    fields = ("dataset", "partition", "event_id", "metadata")
    entries = await runtime.redis.xrange("baton:events")
    kept = [from_wire(f[b"e"], entry_id.decode())[0] for entry_id, f in entries]
    return [e.model_dump(mode="json", include=set(fields), exclude_defaults=True) for e in kept]


async def post(client: httpx.AsyncClient, way: Way, text: str, **headers: str) -> httpx.Response:
    return await client.post(way.path, content=way.wrap(text).encode(),
                             headers={**way.headers, **headers})  # fmt: skip


def problem_fields(answer: httpx.Response, status: int) -> dict[str, str]:
    """The problem body's fields (-> message), after checking it is one, of `status`."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body = answer.json()
    assert body["status"] == status and body["title"] and body["detail"]
    assert body["type"].startswith("https://baton.dev/problems/")
    return {e["field"]: e["message"] for e in body["errors"]}


by_way = pytest.mark.parametrize("way", WAYS, ids=lambda w: w.name)
by_event_way = pytest.mark.parametrize("way", EVENT_WAYS, ids=lambda w: w.name)


@by_way
async def test_json_nested_10000_deep_is_a_400_naming_the_body(api: Api, way: Way) -> None:
    client, _ = api
    answer = await post(client, way, "[" * 10_000 + "]" * 10_000)
    assert "deeper than 64" in problem_fields(answer, 400)["body"]


@by_way
async def test_metadata_nested_300_deep_is_a_400_naming_the_place(api: Api, way: Way) -> None:
    client, _ = api
    deep = '{"a":' * 300 + "1" + "}" * 300
    answer = await post(client, way, '{"dataset": "warehouse.orders", "metadata": ' + deep + "}")
    [(field, message)] = problem_fields(answer, 400).items()
    assert field.startswith(f"{way.prefix}metadata.a.a.a") and "deeper than 64" in message


@by_event_way
async def test_metadata_nested_past_32_is_a_422_naming_metadata(api: Api, way: Way) -> None:
    client, _ = api
    deep = '{"a":' * 40 + "1" + "}" * 40
    answer = await post(client, way, '{"dataset": "warehouse.orders", "metadata": ' + deep + "}")
    assert "deeper than 32" in problem_fields(answer, 422)[f"{way.prefix}metadata"]


@by_way
async def test_a_5000_digit_integer_is_a_400_naming_its_field(api: Api, way: Way) -> None:
    client, _ = api
    answer = await post(client, way, '{"dataset": "d", "metadata": {"n": ' + "9" * 5000 + "}}")
    assert "more digits than the 4300" in problem_fields(answer, 400)[f"{way.prefix}metadata.n"]


@by_way
async def test_a_lone_surrogate_in_a_value_is_a_400_naming_its_field(api: Api, way: Way) -> None:
    client, _ = api
    answer = await post(client, way, '{"dataset": "bad.\\ud800"}')
    assert "lone surrogate" in problem_fields(answer, 400)[f"{way.prefix}dataset"]


@by_way
async def test_a_lone_surrogate_in_a_key_is_refused_not_replaced(api: Api, way: Way) -> None:
    client, _ = api
    answer = await post(client, way, '{"dataset": "d", "metadata": {"k\\udc00": 1}}')
    field = f'{way.prefix}metadata["k\\udc00"]'
    assert "the key holds a lone surrogate" in problem_fields(answer, 400)[field]


@by_way
async def test_nan_infinity_and_1e999_are_refused_not_stored_as_null(api: Api, way: Way) -> None:
    client, _ = api
    text = '{"dataset": "d", "metadata": {"a": NaN, "b": Infinity, "c": -Infinity, "d": 1e999}}'
    errors = problem_fields(await post(client, way, text), 400)
    assert set(errors) == {f"{way.prefix}metadata.{k}" for k in "abcd"}
    assert errors[f"{way.prefix}metadata.a"] == "NaN is not a JSON number"
    assert errors[f"{way.prefix}metadata.d"] == "1e999 is past a double's range"


async def test_a_pair_of_surrogates_is_one_character_and_accepted(api: Api) -> None:
    client, runtime = api
    answer = await client.post("/v1/events", json={"dataset": "emoji.\U0001f600"})
    assert answer.status_code == 202
    assert (await stored(runtime))[-1]["dataset"] == "emoji.\U0001f600"
    await forget_all_but_the_keeper(runtime)


@by_way
@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/xml", "application/x-www-form-urlencoded",
     "multipart/form-data; boundary=x", "application/json; charset=latin-1"],
)  # fmt: skip
async def test_a_body_that_is_not_json_by_its_content_type_is_a_415(
    api: Api, way: Way, content_type: str
) -> None:
    client, _ = api
    answer = await post(client, way, json.dumps({"dataset": "d"}), **{"content-type": content_type})
    assert problem_fields(answer, 415)["content-type"]
    assert "application/json" in answer.headers["accept-post"]


async def test_no_content_type_is_json_as_curl_and_cloudevents_binary_mode_send_it(
    api: Api,
) -> None:
    client, runtime = api
    for headers in ({}, BINARY):
        answer = await client.post("/v1/events", content=b'{"dataset": "d"}', headers=headers)
        assert answer.status_code == 202, answer.text
    assert len(await stored(runtime)) == 3
    await forget_all_but_the_keeper(runtime)


OPENLINEAGE_MISFITS = [
    ({"eventType": {}}, "eventType"),
    ({"eventType": []}, "eventType"),
    ({"outputs": [{"namespace": "n", "name": "o", "facets": [1]}]}, "outputs[0].facets"),
    ({"outputs": [{"name": "o", "facets": {"partition": 5}}]}, "outputs[0].facets.partition"),
    ({"outputs": [{"name": "o", "facets": {"partition": {"key": 5}}}]},
     "outputs[0].facets.partition.key"),
    ({"run": {"runId": "r", "facets": {"nominalTime": {"nominalStartTime": 5}}}},
     "run.facets.nominalTime.nominalStartTime"),
    ({"run": {"runId": "r", "facets": {"nominalTime": {"nominalStartTime": "noon"}}}},
     "run.facets.nominalTime.nominalStartTime"),
    ({"run": {"runId": "r", "facets": []}}, "run.facets"),
    ({"outputs": [{"name": "o", "outputFacets": "x"}]}, "outputs[0].outputFacets"),
    ({"outputs": [{"name": "o", "outputFacets": {"outputStatistics": {"rowCount": True}}}]},
     "outputs[0].outputFacets.outputStatistics.rowCount"),
    ({"outputs": [{"name": "o", "namespace": {}}]}, "outputs[0].namespace"),
    ({"outputs": [7]}, "outputs[0]"),
    ({"outputs": {}}, "outputs"),
    ({"job": {"name": "j", "namespace": 1}}, "job.namespace"),
    ({"producer": ["p"]}, "producer"),
    ({"eventTime": 0}, "eventTime"),
    ({"eventTime": "yesterday"}, "eventTime"),
    ({"run": {"runId": "r" * 600}}, "run.runId"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "field"), OPENLINEAGE_MISFITS, ids=str)
async def test_an_openlineage_value_of_the_wrong_type_is_a_422_naming_it(
    api: Api, change: dict[str, Any], field: str
) -> None:
    client, _ = api
    run_event = {"eventType": "COMPLETE", "eventTime": "2026-11-23T05:00:00Z", "producer": "p",
                 "run": {"runId": "r"}, "job": {"name": "j"},
                 "outputs": [{"namespace": "n", "name": "o"}], **change}  # fmt: skip
    answer = await client.post("/v1/openlineage", json=run_event)
    assert field in problem_fields(answer, 422)


CLOUDEVENT_MISFITS = [
    ({"id": 5}, "id"), ({"source": {}}, "source"), ({"type": ["t"]}, "type"),
    ({"time": 0}, "time"), ({"time": "noon"}, "time"), ({"specversion": {"v": 1}}, "specversion"),
    ({"data": [1]}, "data"), ({"id": "x" * 600}, "id"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "field"), CLOUDEVENT_MISFITS, ids=str)
async def test_a_cloudevent_attribute_of_the_wrong_type_is_a_422_naming_it(
    api: Api, change: dict[str, Any], field: str
) -> None:
    client, _ = api
    sent = {**json.loads(envelope('{"dataset": "d"}')), **change}
    for content_type, prefix, body in (
        ("application/cloudevents+json", "", sent),
        ("application/cloudevents-batch+json", "[0].", [sent]),
    ):
        answer = await client.post("/v1/events", content=json.dumps(body).encode(),
                                   headers={"content-type": content_type})  # fmt: skip
        assert prefix + field in problem_fields(answer, 422)


async def test_a_binary_mode_header_that_makes_a_bad_event_is_named_as_a_header(api: Api) -> None:
    client, _ = api
    headers = {**BINARY, "ce-time": "noon", "ce-id": "\x7f" * 3}
    answer = await client.post("/v1/events", content=b'{"dataset": "d"}', headers=headers)
    assert set(problem_fields(answer, 422)) == {"ce-time", "ce-id"}


async def test_a_content_length_of_a_non_ascii_digit_is_no_number(api: Api) -> None:
    client, _ = api
    # '²' (0xB2 as latin-1) is a digit to str.isdigit, not to int()
    raw = [(b"content-length", b"\xb2"), (b"content-type", b"application/json")]
    request = httpx.Request("POST", "http://baton/v1/openlineage", headers=raw,
                            content=b'{"eventType": "START"}')  # fmt: skip
    answer = await client.send(request)
    assert answer.status_code == 202 and answer.json()["ignored"] == 1


def test_the_client_refuses_what_the_api_would_before_sending(redis_url: str) -> None:
    with BatonClient(redis_url=redis_url) as client:
        for metadata in ({"x": float("nan")}, {"k\ud800": 1}, {"n": 10**5000}, {"t": {1, 2}}):
            with pytest.raises(EventRejected, match="metadata"):
                client.publish("warehouse.orders", metadata=metadata)
        with pytest.raises(EventRejected, match="dataset"):
            client.publish("bad.\ud800")


# -- fuzzing each way in ---------------------------------------------------------------

ALLOWED = {202, 400, 401, 403, 413, 415, 422, 429}
FUZZ_WAYS = [
    *WAYS,
    Way("openlineage-raw", "/v1/openlineage", {}, lambda t: t, "", carries_events=False),
]
NASTY = st.sampled_from(
    ["\ud800", "a\udfff", "", " ", "\x00", "2026-11-23", "2026-11-31", "23-11-2026", "COMPLETE",
     "1.0", "x" * 600, 2**63, -(2**63) - 1, 2**64, float("nan"), float("inf"), 1e308, -0.0, True]
)  # fmt: skip
SCALARS = NASTY | st.none() | st.integers() | st.floats() | st.text(max_size=12)
KEYS = st.text(max_size=8) | st.sampled_from(["\ud800", "k\udfff", "", "dataset", "a.b"])
JSON = st.recursive(
    SCALARS,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(KEYS, kids, max_size=4),
    max_leaves=12,
)
# Text no JSON encoder writes, put in place of a value in a valid body.
FRAGMENTS = st.sampled_from(
    ["NaN", "-Infinity", "1e999", "-1e400", "9" * 5000, "-" + "9" * 30, '"\\ud800"', '"\\udc00x"',
     '{"\\ud800": 1}', '"\\ud83d\\ude00"', "[" * 70 + "]" * 70, '{"a":' * 40 + "1" + "}" * 40,
     "[" * 5000 + "]" * 5000, '"\\u0000"', "tru", "01", '"\\x"']
)  # fmt: skip
FIELDS = ["dataset", "partition", "status", "event_id", "producer", "occurred_at", "metadata",
          "events", "specversion", "id", "source", "type", "time", "data", "eventType", "run",
          "runId", "job", "outputs", "facets", "outputFacets", "outputStatistics", "rowCount",
          "name", "namespace", "nominalTime", "nominalStartTime", "key"]  # fmt: skip
CONTENT_TYPES = st.sampled_from(
    [None, "application/json", "application/cloudevents+json", "application/json; charset=utf-8",
     "application/cloudevents-batch+json", "text/plain", "application/xml", "application/x+json",
     "multipart/form-data; boundary=b", "application/json; charset=utf-16", ""]
) | st.binary(max_size=20)  # fmt: skip
HEADER_VALUES = st.binary(max_size=30).filter(lambda b: not set(b) & set(b"\r\n\0"))
# A run event with every value Baton reads, so that mutations land on each.
FULL_RUN_EVENT = {
    "eventType": "COMPLETE", "eventTime": "2026-11-23T05:00:00Z", "producer": "p",
    "run": {"runId": "r-1", "facets": {"nominalTime": {"nominalStartTime": "2026-11-23T00:00Z"}}},
    "job": {"namespace": "j", "name": "load"},
    "outputs": [{"namespace": "n", "name": "orders", "facets": {"partition": {"key": "2026-11-23"}},
                 "outputFacets": {"outputStatistics": {"rowCount": 3}}}],
}  # fmt: skip


def valid_body(way: Way) -> Any:
    if not way.carries_events:
        return json.loads(json.dumps(FULL_RUN_EVENT))
    event = {"dataset": "warehouse.orders", "partition": "2026-11-23", "metadata": {"n": 1}}
    return json.loads(way.wrap(json.dumps(event)))


def objects(value: Any) -> list[dict[str, Any]]:
    """Every object in a JSON value, the value itself first."""
    found = [value] if isinstance(value, dict) else []
    children = (
        value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    )
    for child in children:
        found += objects(child)
    return found


@st.composite
def bodies(draw: st.DrawFn, way: Way) -> bytes:
    """Generated JSON; a valid body with one value changed, to a generated one or to text
    no encoder writes; or raw bytes."""
    kind = draw(st.sampled_from(["json", "mutated", "fragment", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return json.dumps(draw(JSON)).encode()
    data = valid_body(way)
    target = draw(st.sampled_from(objects(data)))
    target[draw(st.sampled_from(FIELDS))] = draw(JSON) if kind == "mutated" else "FRAGMENT"
    return json.dumps(data).replace('"FRAGMENT"', draw(FRAGMENTS)).encode()


@st.composite
def headers(draw: st.DrawFn, way: Way) -> list[tuple[bytes, bytes]]:
    out = [(k.encode(), v.encode()) for k, v in way.headers.items() if k != "content-type"]
    if draw(st.integers(0, 9)) < 8:  # mostly the right token, so the body gets read
        out.append((b"authorization", f"Bearer {TOKEN}".encode()))
    elif draw(st.booleans()):
        out.append((b"authorization", draw(HEADER_VALUES)))
    own = way.headers.get("content-type")
    kind = own if own and draw(st.integers(0, 9)) < 7 else draw(CONTENT_TYPES)
    if kind is not None:
        out.append((b"content-type", kind if isinstance(kind, bytes) else kind.encode()))
    names = st.sampled_from(["ce-specversion", "ce-id", "ce-time", "ce-source", "ce-type"])
    for name in draw(st.lists(names, max_size=3)):
        out.append((name.encode(), draw(HEADER_VALUES)))
    if draw(st.integers(0, 19)) == 0:  # a signed request, so mostly not: it is refused
        out.append((b"x-baton-signature", draw(HEADER_VALUES)))
    return out


@pytest.fixture
def fuzz_api(tmp_path: Path, redis_url: str) -> Iterator[Callable[..., httpx.Response]]:
    """A sync `send(path, body, headers)` into the app, on a loop of its own, since
    hypothesis drives plain functions; with a producer token, so 401 is in play."""
    loop = asyncio.new_event_loop()
    producers = [{"name": "fuzz", "token": TOKEN, "datasets": ["*"]}]
    settings = make_settings(tmp_path, redis_url, producers=producers, max_backlog=10**9)
    runtime = loop.run_until_complete(Runtime.open(settings))
    app = create_app(runtime, load_checked(settings))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://baton")

    def send(path: str, body: bytes, raw_headers: list[tuple[bytes, bytes]]) -> httpx.Response:
        request = httpx.Request("POST", f"http://baton{path}", content=body, headers=raw_headers)
        return loop.run_until_complete(client.send(request))

    yield send
    loop.run_until_complete(client.aclose())
    loop.run_until_complete(runtime.close())
    loop.close()


@pytest.mark.parametrize("way", FUZZ_WAYS, ids=lambda w: w.name)
def test_fuzzed_requests_at_every_way_in_never_earn_a_5xx(
    fuzz_api: Callable[..., httpx.Response], way: Way
) -> None:
    @settings(max_examples=200, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(body=bodies(way), raw_headers=headers(way))
    def answers_in_kind(body: bytes, raw_headers: list[tuple[bytes, bytes]]) -> None:
        answer = fuzz_api(way.path, body, raw_headers)
        event(f"HTTP {answer.status_code}")  # --hypothesis-show-statistics shows the mix
        assert answer.status_code in ALLOWED, (answer.status_code, answer.text[:300])
        if answer.status_code == 202:
            assert {"accepted", "duplicates", "routes"} <= set(answer.json())
        else:
            problem_fields_any(answer)

    answers_in_kind()


def problem_fields_any(answer: httpx.Response) -> None:
    assert answer.headers["content-type"] == "application/problem+json", answer.text[:200]
    body = answer.json()
    assert body["status"] == answer.status_code
    assert isinstance(body["title"], str) and isinstance(body["detail"], str)
    assert all(isinstance(e["field"], str) for e in body.get("errors", []))


# -- a real process, over a real socket -------------------------------------------------


def test_a_real_baton_run_refuses_the_worst_cases_and_keeps_serving(cluster: Cluster) -> None:
    cluster.write_contracts({"report.yaml": CONTRACT})
    cluster.write_config("http://127.0.0.1:9")
    cluster.run()
    events, lineage, plain = (f"{cluster.api}/v1/events", f"{cluster.api}/v1/openlineage",
                              {"content-type": "application/json"})  # fmt: skip
    worst = [
        (events, plain, b"[" * 10_000 + b"]" * 10_000, 400),
        (events, plain, b'{"dataset": "d", "metadata": {"n": ' + b"9" * 5000 + b"}}", 400),
        (events, plain, b'{"dataset": "bad.\\ud800"}', 400),
        (events, plain, b'{"dataset": "d", "metadata": {"x": NaN}}', 400),
        (events, {"content-type": "text/plain"}, b'{"dataset": "d"}', 415),
        (events, {**BINARY, "ce-time": "noon"}, b'{"dataset": "d"}', 422),
        (lineage, plain, b'{"eventType": {}}', 422),
        (lineage, plain, run_event("1").replace('{"custom":1}', "[1]").encode(), 422),
    ]  # fmt: skip
    for url, headers, body, status in worst:
        answer = httpx.post(url, content=body, headers=headers, timeout=10)
        assert answer.status_code == status, (body[:60], answer.text[:300])
        assert answer.headers["content-type"] == "application/problem+json"
    kept = httpx.post(events, json=KEEPER, timeout=10)
    assert kept.status_code == 202 and kept.json()["accepted"] == ["keep-me"]
