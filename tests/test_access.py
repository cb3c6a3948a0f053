"""Who may call what, against a real `baton run` with credentials configured: every
endpoint tried with no token, a producer's, a viewer's, an operator's and an admin's,
taken from the OpenAPI document so that a new endpoint is covered the day it lands."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from broker.embedded_redis import free_port
from broker.ingest.auth import token_hash
from tests.conftest import Cluster

CONTRACT = """
name: report
partitioned: daily
when: {all_of: [warehouse.orders, warehouse.fx]}
trigger: {target: hook}
"""
TOKENS = {
    "producer": "tok-producer",
    "viewer": "tok-viewer",
    "operator": "tok-operator",
    "admin": "tok-admin",
}
RANK = {"viewer": 1, "operator": 2, "admin": 3}
# Paths the document does not list, and what each needs.
UNLISTED = [("GET", "/", "viewer"), ("GET", "/docs", "viewer"), ("GET", "/openapi.json", "viewer"),
            ("GET", "/nowhere", "viewer"), ("DELETE", "/v1/contracts", "admin"),
            ("GET", "/login", "public")]  # fmt: skip


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, redis_server: Any) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("access"), redis_server.url)
    cluster.write_contracts({"report.yaml": CONTRACT})
    cluster.write_config(
        "http://127.0.0.1:9",
        producers=[{"name": "loader", "token": TOKENS["producer"], "datasets": ["warehouse.*"]}],
        principals=[
            {"name": "grafana", "token": TOKENS["viewer"], "role": "viewer"},
            {"name": "oncall", "token_sha256": token_hash(TOKENS["operator"]),
             "role": "operator"},
            {"name": "platform", "token": TOKENS["admin"], "role": "admin"},
        ],
    )  # fmt: skip
    cluster.run()
    yield cluster
    cluster.close()


def operations(api: Cluster) -> list[tuple[str, str, str]]:
    """(method, concrete path, need) for every operation the document lists."""
    doc = httpx.get(api.api + "/openapi.json", headers=_bearer("viewer"), timeout=10).json()
    out = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            out.append((method.upper(), re.sub(r"\{[^}]+\}", "x", path), op["x-baton-role"]))
    return out + UNLISTED


def _bearer(who: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who]}"} if who else {}


def call(api: Cluster, method: str, path: str, who: str | None) -> httpx.Response:
    body = {"dataset": "warehouse.orders"} if method == "POST" else None
    return httpx.request(method, api.api + path, json=body, headers=_bearer(who), timeout=10,
                         follow_redirects=False)  # fmt: skip


def expected(need: str, who: str | None) -> set[int] | None:
    """The refusal `who` must get, or None when it must pass the door."""
    if need == "public":
        return None
    if who is None:
        return {401}
    if need == "publish":
        return None if who in ("producer", "admin") else {403}
    if who == "producer" or RANK[who] < RANK[need]:
        return {403}
    return None


def test_every_endpoint_refuses_or_admits_each_kind_of_caller_by_its_role(api: Cluster) -> None:
    ops = operations(api)
    assert len(ops) >= 20
    wrong = []
    for method, path, need in ops:
        for who in (None, "producer", "viewer", "operator", "admin"):
            answer = call(api, method, path, who)
            refusal = expected(need, who)
            got = answer.status_code
            if (refusal is None and got in (401, 403)) or (refusal and got not in refusal):
                wrong.append(f"{method} {path} ({need}) as {who}: {got} {answer.text[:120]}")
            if got in (401, 403):
                assert answer.headers["content-type"] == "application/problem+json"
    assert wrong == []


def test_the_health_checks_stay_open_and_the_rest_is_closed_without_a_token(api: Cluster) -> None:
    assert httpx.get(api.api + "/healthz", timeout=5).status_code == 200
    assert httpx.get(api.api + "/readyz", timeout=5).status_code == 200
    refused = httpx.get(api.api + "/v1/contracts", timeout=5)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert refused.json()["detail"].startswith("a token is required")


def test_a_producer_token_may_only_publish(api: Cluster) -> None:
    answer = call(api, "GET", "/v1/triggers", "producer")
    assert answer.status_code == 403
    assert answer.json()["detail"] == "producer 'loader' may only publish events"


def test_a_viewer_is_told_which_role_an_operation_needs(api: Cluster) -> None:
    answer = call(api, "POST", "/v1/contracts/report/pause", "viewer")
    assert answer.status_code == 403
    assert answer.json()["detail"] == (
        "this needs the operator role; principal 'grafana' is a viewer"
    )


def test_the_openapi_document_declares_the_security_of_every_operation(api: Cluster) -> None:
    doc = httpx.get(api.api + "/openapi.json", headers=_bearer("viewer"), timeout=10).json()
    assert set(doc["components"]["securitySchemes"]) == {"bearer", "session", "signature"}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert "security" in op, f"{method} {path}"
            if op["x-baton-role"] == "public":
                assert op["security"] == []
            else:
                assert op["security"] and {"401", "403"} <= set(op["responses"]), path


def test_a_browser_signs_in_with_a_token_and_gets_a_strict_http_only_cookie(api: Cluster) -> None:
    page = httpx.get(api.api + "/", headers={"Accept": "text/html"}, timeout=5)
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/"
    with httpx.Client(base_url=api.api, timeout=5) as browser:
        refused = browser.post("/login", data={"token": TOKENS["producer"], "next": "/"})
        assert refused.status_code == 401 and "baton_session" not in refused.headers.get(
            "set-cookie", ""
        )
        signed = browser.post("/login", data={"token": TOKENS["operator"], "next": "/"})
        assert signed.status_code == 303 and signed.headers["location"] == "/"
        cookie = signed.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        status = browser.get("/")
        assert status.status_code == 200 and "oncall (operator)" in status.text


def test_a_cookie_alone_cannot_change_state_without_the_csrf_token(api: Cluster) -> None:
    with httpx.Client(base_url=api.api, timeout=5) as browser:
        browser.post("/login", data={"token": TOKENS["operator"], "next": "/"})
        forged = browser.post("/v1/contracts/report/pause", json={})
        assert forged.status_code == 403
        assert forged.json()["title"] == "CSRF token missing or wrong"
        cross = browser.post("/v1/contracts/report/pause", json={},
                             headers={"Sec-Fetch-Site": "cross-site"})  # fmt: skip
        assert cross.status_code == 403 and cross.json()["title"] == "Cross-site request"
        page = browser.get("/").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert csrf is not None
        done = browser.post("/v1/contracts/report/pause", json={},
                            headers={"X-CSRF-Token": csrf.group(1)})  # fmt: skip
        assert done.status_code == 200 and done.json()["paused"]["by"] == "oncall"
        resumed = browser.post("/v1/contracts/report/resume", json={},
                               headers={"X-CSRF-Token": csrf.group(1)})  # fmt: skip
        assert resumed.status_code == 200
        out = browser.post("/logout", data={"csrf_token": csrf.group(1)})
        assert out.status_code == 303
        assert browser.get("/v1/contracts").status_code == 401


def test_metrics_can_be_opened_to_scrapers_on_purpose(cluster: Cluster) -> None:
    cluster.write_contracts({"report.yaml": CONTRACT})
    cluster.port = free_port()
    api = {"host": "127.0.0.1", "port": cluster.port, "public_metrics": True}
    cluster.write_config("http://127.0.0.1:9", api=api,
                         principals=[{"name": "v", "token": "t", "role": "viewer"}])  # fmt: skip
    cluster.run()
    assert httpx.get(cluster.api + "/metrics", timeout=5).status_code == 200
    assert httpx.get(cluster.api + "/v1/contracts", timeout=5).status_code == 401
