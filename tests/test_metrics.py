"""GET /metrics: Prometheus text that Prometheus's own parser reads, with counters kept in
Redis by the scripts that do the counted thing, so they survive restarts."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Cluster, wait_until

REPORT = """name: revenue_report
partitioned: daily
when: {all_of: [feeds.orders, feeds.fx]}
trigger: {target: hook}
"""
BROKEN = "name: broken_report\npartitioned: daily\nwhen: feeds.other\ntrigger: {target: nowhere}\n"


def scrape(cluster: Cluster) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = httpx.get(cluster.api + "/metrics", timeout=5)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def test_metrics_count_events_triggers_dispatches_and_survive_a_restart(
    cluster: Cluster,
) -> None:
    sink = cluster.sink()
    folder = cluster.write_contracts({"revenue.yaml": REPORT, "broken.yaml": BROKEN})
    closed = "http://127.0.0.1:9"
    cluster.write_config(sink.url, targets={"nowhere": {"kind": "webhook", "url": closed}})
    cluster.run()
    events = [{"dataset": "feeds.orders", "partition": "2026-10-01", "event_id": "o1"},
              {"dataset": "feeds.orders", "partition": "2026-10-01", "event_id": "o1"},
              {"dataset": "feeds.fx", "partition": "2026-10-01"},
              {"dataset": "feeds.orders", "partition": "2026-10-02"},
              {"dataset": "feeds.other", "partition": "2026-10-03"}]  # fmt: skip
    httpx.post(cluster.api + "/v1/events", json={"events": events}, timeout=5)
    wait_until(lambda: scrape(cluster)[("baton_dead_letters", ())] == 1)
    wait_until(lambda: scrape(cluster)[("baton_dispatches_total", (("outcome", "succeeded"),))])
    seen = scrape(cluster)
    assert seen[("baton_events_accepted_total", ())] == 4
    assert seen[("baton_events_duplicate_total", ())] == 1
    assert seen[("baton_triggers_fired_total", (("cause", "event"),))] == 2
    assert seen[("baton_triggers_fired_total", (("cause", "reevaluation"),))] == 0
    assert seen[("baton_dispatches_total", (("outcome", "succeeded"),))] == 1
    assert seen[("baton_dispatches_total", (("outcome", "failed"),))] == 1
    assert seen[("baton_dispatches_total", (("outcome", "retrying"),))] == 2  # 3 attempts
    assert seen[("baton_events_backlog", ())] == 0
    assert seen[("baton_contracts", ())] == 2
    version = httpx.get(cluster.api + "/v1/contracts", timeout=5).json()["version"]
    assert seen[("baton_contracts_info", (("version", version),))] == 1
    assert seen[("baton_processes", (("version", version),))] == 1
    assert seen[("baton_contracts_reload_failing", ())] == 0

    (folder / "revenue.yaml").write_text(REPORT.replace("all_of", "any_of"))  # 10-02 fires
    wait_until(lambda: scrape(cluster)[("baton_triggers_fired_total",
                                        (("cause", "reevaluation"),))] == 1)  # fmt: skip
    (folder / "broken.yaml").write_text("name: [")
    wait_until(lambda: scrape(cluster)[("baton_contracts_reload_failing", ())] == 1)

    for proc in cluster.procs:  # a restart keeps the counters: they live in Redis
        if proc is not sink.proc:
            proc.stop()
    cluster.procs = [sink.proc]
    (folder / "broken.yaml").write_text(BROKEN)
    cluster.run()
    again = scrape(cluster)
    assert again[("baton_events_accepted_total", ())] == 4
    assert again[("baton_triggers_fired_total", (("cause", "event"),))] == 2
