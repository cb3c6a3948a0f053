"""No command prints a traceback for a user's mistake or for a Redis that is away:
one line that says what is wrong, and exit code 1 (click's usage errors: 2)."""

from __future__ import annotations

import pytest

from broker.embedded_redis import free_port
from tests.conftest import Cluster

CONTRACT = """
name: revenue_report
partitioned: daily
when: warehouse.orders
trigger: {target: hook}
"""
MISTAKES = [
    (["explain", "revenue_report", "2026-13-01"],
     "no daily partition for 2026-13-01: month must be in 1..12"),
    (["explain", "revenue_report", "23-11-2026"],
     "partition '23-11-2026' is not a daily key (YYYY-MM-DD)"),
    (["explain", "nope"], "no contract named 'nope'"),
    (["backfill", "revenue_report", "--from", "2026-01-01", "--to", "2026-13-01", "--dry-run"],
     "no daily partition for 2026-13-01"),
    (["diff", "/nonexistent", "/tmp"], "/nonexistent: no such contracts folder"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "says"), MISTAKES, ids=lambda v: str(v)[:40])
def test_a_users_mistake_is_one_line_and_no_traceback(
    cluster: Cluster, args: list[str], says: str
) -> None:
    cluster.write_contracts({"revenue.yaml": CONTRACT})
    cluster.write_config("http://127.0.0.1:9")
    result = cluster.cli(*args, check=False)
    assert result.returncode == 1
    assert says in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) <= 2


@pytest.mark.parametrize("args", [["explain", "revenue_report", "2026-11-23"], ["triggers"],
                                  ["dlq", "list"], ["replay", "--from", "2026-11-01", "--to",
                                  "2026-11-02"]])  # fmt: skip
def test_a_redis_that_is_away_is_named_not_dumped(cluster: Cluster, args: list[str]) -> None:
    cluster.redis_url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    cluster.write_contracts({"revenue.yaml": CONTRACT})
    cluster.write_config("http://127.0.0.1:9")
    result = cluster.cli(*args, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("Error: cannot reach Redis:")
    assert "Traceback" not in result.stderr
