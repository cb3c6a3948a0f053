"""The OpenAPI document is complete and correct: schemathesis generates requests for
every operation against a real `baton run` (real Redis) with credentials configured,
and every answer must be documented, schema-conformant, and never a 5xx. Its checks
include `ignored_auth`: each operation is also tried without the token, and must
refuse it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from broker.embedded_redis import RedisProcess
from tests.conftest import Cluster

CONTRACT = """
name: report
partitioned: daily
when: {all_of: [warehouse.orders, warehouse.fx_rates]}
trigger: {target: hook}
"""
ADMIN = "fuzz-admin-token"
EXAMPLES = 150  # per operation: about 2,500 requests in all, 60-120 s here


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisProcess) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("openapi"), redis_server.url)
    cluster.write_contracts({"report.yaml": CONTRACT})
    cluster.write_config(
        "http://127.0.0.1:9",
        producers=[{"name": "loader", "token": "fuzz-producer", "datasets": ["*"]}],
        principals=[{"name": "fuzzer", "token": ADMIN, "role": "admin"}],
    )
    cluster.run()
    try:
        yield cluster
    finally:
        cluster.close()


# About 60 s of CPU in this process (generating and validating); more on a busy machine.
@pytest.mark.timeout(600)
def test_every_operation_answers_as_documented(api: Cluster) -> None:
    auth = {"Authorization": f"Bearer {ADMIN}"}
    document = httpx.get(api.api + "/openapi.json", headers=auth, timeout=10).json()
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    seen: Counter[str] = Counter()
    failures: list[str] = []
    for operation in operations:
        _fuzz(operation, api.api, auth, seen, failures)
    print(f"schemathesis: {dict(seen)}")  # the counts for the record (pytest -s)
    assert seen["requests"] >= len(operations) * 10
    assert seen["5xx"] == 0, failures
    assert failures == []


def _fuzz(
    operation: Any, base: str, auth: dict[str, str], seen: Counter[str], failures: list[str]
) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=operation.as_strategy())
    def answers_as_documented(case: schemathesis.Case) -> None:
        seen["requests"] += 1
        try:
            response = case.call_and_validate(base_url=base, headers=auth)
        except (Exception, BaseExceptionGroup) as exc:  # recorded: every operation gets its turn
            seen["violations"] += 1
            failures.append(f"{operation.label}: {str(exc)[:800]}")
            return
        if response.status_code >= 500:
            seen["5xx"] += 1

    answers_as_documented()
