"""`baton replay` rebuilds match state for a contract added after its events came in,
fires nothing, and leaves the runs to `baton backfill`; the stream keeps events for
`events_retention` and never drops one the matchers have not been handed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis

from broker.core.events import Event
from broker.ingest.intake import ingest
from broker.state.keys import Keys
from broker.state.redis_store import RedisStore
from tests.conftest import Cluster, Sink, wait_until

FIRST = "name: first\npartitioned: daily\nwhen: warehouse.orders\ntrigger: {target: hook}\n"
LATER = ("name: later\npartitioned: daily\nwhen: {all_of: [warehouse.orders, warehouse.fx]}\n"
         "trigger: {target: hook}\n")  # fmt: skip


def keys_sent(sink: Sink) -> list[str]:
    return sorted(d["idempotency_key"] for d in sink.deliveries())


def test_a_contract_added_later_is_rebuilt_by_replay_and_run_by_backfill(
    cluster: Cluster,
) -> None:
    sink = cluster.sink()
    cluster.write_contracts({"first.yaml": FIRST})
    cluster.write_config(sink.url)
    baton = cluster.run()
    since = datetime.now(UTC) - timedelta(seconds=1)
    for dataset, day in [("warehouse.orders", "2026-11-20"), ("warehouse.orders", "2026-11-21"),
                         ("warehouse.fx", "2026-11-20")]:  # fmt: skip
        cluster.cli("publish", dataset, "--partition", day)
    wait_until(lambda: len(keys_sent(sink)) == 2)

    baton.stop()
    cluster.procs.remove(baton)
    cluster.write_contracts({"first.yaml": FIRST, "later.yaml": LATER})
    cluster.run()
    until = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    out = json.loads(cluster.cli("replay", "--from", since.isoformat(), "--to", until,
                                 "--json").stdout)  # fmt: skip
    assert out["events"] == 3
    assert out["ready"] == {"later": ["2026-11-20"]}
    text = cluster.cli("replay", "--from", since.isoformat(), "--to", until).stdout
    assert "later: 1 partitions complete and not run: 2026-11-20" in text
    assert "baton backfill later --from 2026-11-20 --to 2026-11-20" in text
    explained = json.loads(cluster.cli("explain", "later", "2026-11-20", "--json").stdout)
    assert explained["condition_holds"] and explained["trigger"] is None
    assert keys_sent(sink) == ["baton:first:2026-11-20:0", "baton:first:2026-11-21:0"]

    cluster.cli("backfill", "later", "--from", "2026-11-20", "--to", "2026-11-21", "--detach")
    wait_until(lambda: len(keys_sent(sink)) == 3)
    assert keys_sent(sink)[2] == "baton:later:2026-11-20:0"  # 2026-11-21 lacks fx


def test_replay_refuses_a_backwards_range(cluster: Cluster) -> None:
    cluster.write_contracts({"first.yaml": FIRST})
    cluster.write_config("http://127.0.0.1:9")
    result = cluster.cli("replay", "--from", "2026-11-24", "--to", "2026-11-23", check=False)
    assert result.returncode == 2 and "comes after" in result.stderr
    result = cluster.cli("replay", "--from", "yesterday", "--to", "2026-11-23", check=False)
    assert result.returncode == 2 and "is not a time like" in result.stderr


async def test_trimming_keeps_what_the_matchers_were_not_handed(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    store = RedisStore(client, Keys("trim"), max_backlog=10**9, dedup_ttl_s=60)
    await store.ensure_groups()
    await ingest(store, [Event(dataset="d", event_id=f"e{i}") for i in range(3)])
    handed = await store.read_new(store.keys.events, store.keys.matchers_group, "w", 2)
    await ingest(store, [Event(dataset="d", event_id="e3")])
    future = int((datetime.now(UTC) + timedelta(days=1)).timestamp() * 1000)
    assert await store.trim_events(future) == 1  # only the first: up to the last handed
    left = await client.xrange(store.keys.events)
    assert left[0][0].decode() == handed[1][0]
    assert len(left) == 3
    await client.aclose()
