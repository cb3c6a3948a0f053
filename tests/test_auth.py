"""Producer tokens and scopes through the real API: 401 without a known token, 403
naming the dataset outside the scope, nothing half-written."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from broker.ingest.auth import signature, token_hash
from tests.conftest import Cluster

CONTRACT = """
name: report
partitioned: daily
when: warehouse.orders
trigger: {target: hook}
"""

WAREHOUSE = "tok-warehouse-1"
EU_ONLY = "tok-eu-2"
SIGNING = "hmac-secret-3"


@pytest.fixture
def api(cluster: Cluster) -> Cluster:
    sink = cluster.sink()
    cluster.write_contracts({"report.yaml": CONTRACT})
    cluster.write_config(sink.url, producers=[
        {"name": "loader", "token": WAREHOUSE, "datasets": ["warehouse.*"]},
        {"name": "eu", "token_sha256": token_hash(EU_ONLY), "datasets": ["sales.*"],
         "partitions": "eu-*"},
        {"name": "saas", "hmac_secret": SIGNING, "datasets": ["saas.*"]},
    ])  # fmt: skip
    cluster.run()
    return cluster


def post(cluster: Cluster, body: Any, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(cluster.api + "/v1/events", json=body, headers=headers, timeout=10)


def test_no_token_is_401_with_a_challenge(api: Cluster) -> None:
    answer = post(api, {"dataset": "warehouse.orders"})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert "a producer token is required" in answer.json()["detail"]
    wrong = post(api, {"dataset": "warehouse.orders"}, token="nope")
    assert wrong.status_code == 401
    assert wrong.json()["detail"] == "the token is not a known producer's"


def test_a_token_publishes_inside_its_scope(api: Cluster) -> None:
    answer = post(api, {"dataset": "warehouse.orders", "partition": "2026-11-23",
                        "event_id": "in-1"}, token=WAREHOUSE)  # fmt: skip
    assert answer.status_code == 202
    assert answer.json()["accepted"] == ["in-1"]


def test_outside_the_scope_is_403_naming_the_dataset_and_writes_nothing(api: Cluster) -> None:
    batch = {"events": [
        {"dataset": "warehouse.orders", "partition": "2026-11-23", "event_id": "ok-1"},
        {"dataset": "finance.ledger", "partition": "2026-11-23", "event_id": "no-1"},
    ]}  # fmt: skip
    answer = post(api, batch, token=WAREHOUSE)
    assert answer.status_code == 403
    problem = answer.json()
    assert problem["errors"] == [{
        "field": "events[1].dataset",
        "message": "dataset 'finance.ledger' is outside producer 'loader''s scope (warehouse.*)",
    }]  # fmt: skip
    # nothing half-written: the in-scope event of that batch was not accepted either
    again = post(api, {"dataset": "warehouse.orders", "partition": "2026-11-23",
                       "event_id": "ok-1"}, token=WAREHOUSE)  # fmt: skip
    assert again.json()["accepted"] == ["ok-1"] and again.json()["duplicates"] == []


def test_a_hashed_token_with_a_partition_pattern(api: Cluster) -> None:
    inside = post(api, {"dataset": "sales.orders", "partition": "eu-west"}, token=EU_ONLY)
    assert inside.status_code == 202
    outside = post(api, {"dataset": "sales.orders", "partition": "us-east"}, token=EU_ONLY)
    assert outside.status_code == 403
    assert (
        "partition 'us-east' of 'sales.orders' does not match producer 'eu''s"
        in (outside.json()["detail"])
    )


def test_the_cli_publishes_with_a_token_and_hashes_one(api: Cluster) -> None:
    denied = api.cli("publish", "warehouse.orders", "-p", "2026-11-23", check=False)
    assert denied.returncode != 0 and "401" in denied.stderr + denied.stdout
    ok = api.cli("publish", "warehouse.orders", "-p", "2026-11-23", "--token", WAREHOUSE)
    assert ok.stdout.startswith("accepted ")
    hashed = api.cli("token", "hash", EU_ONLY)
    assert hashed.stdout.strip() == token_hash(EU_ONLY)


def test_a_producer_needs_exactly_one_of_token_and_hash(cluster: Cluster) -> None:
    cluster.write_contracts({"report.yaml": CONTRACT})
    cluster.write_config("http://127.0.0.1:9", producers=[{"name": "x", "datasets": ["*"]}])
    result = cluster.cli("check", check=False)
    assert result.returncode != 0
    assert "producer 'x': give exactly one of token, token_sha256 or hmac_secret" in (result.stderr)


def signed(
    cluster: Cluster, body: bytes, stamp: int | None = None, secret: str = SIGNING
) -> httpx.Response:
    ts = str(int(time.time()) if stamp is None else stamp)
    headers = {
        "Content-Type": "application/json",
        "X-Baton-Producer": "saas",
        "X-Baton-Timestamp": ts,
        "X-Baton-Signature": signature(secret, ts, body),
    }
    return httpx.post(cluster.api + "/v1/events", content=body, headers=headers, timeout=10)


def test_a_signed_request_is_accepted_once_and_a_replay_is_refused(api: Cluster) -> None:
    body = json.dumps({"dataset": "saas.invoices", "partition": "2026-11-23"}).encode()
    stamp = int(time.time())
    first = signed(api, body, stamp)
    assert first.status_code == 202, first.text
    replay = signed(api, body, stamp)
    assert replay.status_code == 401
    assert replay.json()["detail"] == "X-Baton-Signature was used before: a replayed request"


def test_a_bad_or_stale_signature_is_refused(api: Cluster) -> None:
    body = json.dumps({"dataset": "saas.invoices"}).encode()
    forged = signed(api, body, secret="guess")
    assert forged.status_code == 401
    assert forged.json()["detail"] == "X-Baton-Signature does not match the body and timestamp"
    stale = signed(api, body, stamp=int(time.time()) - 3600)
    assert stale.status_code == 401
    assert "more than 300s from now" in stale.json()["detail"]
    outside = signed(api, json.dumps({"dataset": "warehouse.orders"}).encode())
    assert outside.status_code == 403


def _raw_post(cluster: Cluster, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    """A request with header bytes httpx would not send (non-ASCII), over a raw socket."""
    import socket  # noqa: PLC0415

    head = b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += b"".join(k + b": " + v + b"\r\n" for k, v in headers)
    head += b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    with socket.create_connection(("127.0.0.1", cluster.port), timeout=10) as sock:
        sock.sendall(head + body)
        return sock.recv(65536)


def test_non_ascii_bytes_in_the_signing_headers_are_a_401_not_a_500(api: Cluster) -> None:
    body = json.dumps({"dataset": "saas.invoices"}).encode()
    for headers in (
        [(b"X-Baton-Producer", b"saas"), (b"X-Baton-Timestamp", b"\xb2\xb3"),
         (b"X-Baton-Signature", b"sha256=00")],
        [(b"X-Baton-Producer", b"saas"), (b"X-Baton-Timestamp", str(int(time.time())).encode()),
         (b"X-Baton-Signature", b"sha256=\xe9\xe9")],
        [(b"X-Baton-Producer", b"s\xe4\xe4s"), (b"X-Baton-Signature", b"x")],
        [(b"Authorization", b"Bearer \xff\xfe")],
    ):  # fmt: skip
        answer = _raw_post(api, headers, body)
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
        assert b"application/problem+json" in answer
