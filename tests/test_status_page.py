"""GET /: contracts and what their waiting partitions wait for, recent triggers linked
to their runs, dead letters, and the dependency graph."""

from __future__ import annotations

import html

import httpx

from tests.conftest import Cluster, wait_until

REPORT = """name: revenue_report
owner: analytics
partitioned: daily
when: {all_of: [feeds.orders, feeds.fx]}
trigger: {target: hook}
produces: [reports.revenue]
"""
BROKEN = """name: broken_report
partitioned: daily
when: feeds.other
trigger: {target: nowhere}
"""


def test_the_status_page_shows_waiting_inputs_triggers_dead_letters_and_the_graph(
    cluster: Cluster,
) -> None:
    sink = cluster.sink()
    cluster.write_contracts({"revenue.yaml": REPORT, "broken.yaml": BROKEN})
    closed = "http://127.0.0.1:9"  # nothing listens: every call fails, then a dead letter
    cluster.write_config(sink.url, targets={"nowhere": {"kind": "webhook", "url": closed}})
    cluster.run()
    events = [{"dataset": "feeds.orders", "partition": "2026-10-01"},
              {"dataset": "feeds.orders", "partition": "2026-10-02"},
              {"dataset": "feeds.fx", "partition": "2026-10-02"},
              {"dataset": "feeds.other", "partition": "2026-10-03"}]  # fmt: skip
    httpx.post(cluster.api + "/v1/events", json={"events": events}, timeout=5)
    wait_until(lambda: "baton:revenue_report:2026-10-02:0" in sink.distinct_keys())
    wait_until(lambda: httpx.get(cluster.api + "/v1/dlq", timeout=5).json()["dead_letters"])

    page = httpx.get(cluster.api + "/", timeout=5)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    text = html.unescape(page.text)
    assert "2026-10-01: waits for feeds.fx[2026-10-01]" in text
    assert "2026-10-02: waits" not in text  # it fired
    assert "<td>analytics</td>" in text
    assert "baton:revenue_report:2026-10-02:0</td><td>succeeded</td>" in text
    dead = text.split("<h2>Dead letters</h2>")[1].split("<h2>")[0]
    assert "baton:broken_report:2026-10-03:0" in dead and "none</td>" not in dead
    graph = text.split("<h2>Dependency graph</h2>")[1]
    assert "<td>feeds.fx (dataset)</td><td></td><td>revenue_report (contract)</td>" in graph
    assert "<td>revenue_report (contract)</td><td>produces</td><td>reports.revenue (dataset)" in (
        graph
    )
    assert "flowchart LR" in graph
