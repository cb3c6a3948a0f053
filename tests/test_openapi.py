"""The OpenAPI document at /docs is complete and correct: schemathesis generates
requests for every operation against a real `baton run` (real Redis), and every answer
must be documented, schema-conformant, and never a 5xx."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.schemas import OpenApiSchema

from broker.embedded_redis import RedisProcess
from tests.conftest import Cluster

CONTRACT = """
name: report
partitioned: daily
when: {all_of: [warehouse.orders, warehouse.fx_rates]}
trigger: {target: hook}
"""


@pytest.fixture(scope="module")
def api_schema(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisProcess
) -> Iterator[OpenApiSchema]:
    cluster = Cluster(tmp_path_factory.mktemp("openapi"), redis_server.url)
    cluster.write_contracts({"report.yaml": CONTRACT})
    cluster.write_config("http://127.0.0.1:9")
    cluster.run()
    try:
        yield schemathesis.openapi.from_url(cluster.api + "/openapi.json")
    finally:
        cluster.close()


def test_every_operation_answers_as_documented(api_schema: OpenApiSchema) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:

        @settings(max_examples=25, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(case=operation.as_strategy())
        def answers_as_documented(case: schemathesis.Case) -> None:
            case.call_and_validate()

        answers_as_documented()
