"""Run every benchmark against one fresh redis-server and print one table with ratios.

raw XADD, one per round trip      -> baseline for HTTP single-event ingest (1, 2 API workers,
                                     and with tokens on, beside the same API without)
raw XADD, pipelined by 100        -> baseline for HTTP batches of 100 and BatonClient batches
event -> dispatch latency         -> p50/p99 at 1,000 events/s offered, a core-burning
                                     neighbour beside (raw consumer vs baton worker)
worker CPU per event at 100/s     -> against the raw consumer's at the same rate
matching time, 10 vs 100,000 contracts
a burst of 20,000 partitions  -> dispatch and run-tracking rates, a produces chain's hop
20,000 fired, 20,000 open     -> Redis bytes per fired partition, per open input
(the soak of 1,000,000 partitions is `make bench-retention`)
"""

from __future__ import annotations

import sys
from pathlib import Path

from benchmarks import ingest, latency, matching, procs, raw, retention, tracking
from benchmarks.report import Row, print_table


async def main() -> None:
    quick = "--quick" in sys.argv
    with procs.fresh_redis() as (url, tmp):
        rows = await _run_all(url, tmp, quick)
    print_table(rows)


async def _run_all(url: str, tmp: Path, quick: bool) -> list[Row]:
    scale = 5 if quick else 1
    one = raw.xadd_round_trips(url, 10_000 // scale)
    piped = raw.xadd_pipelined(url, 100_000 // scale, batch=100)
    rows = [
        Row("raw XADD, one per round trip", one, "events/s"),
        Row("raw XADD, pipelined by 100", piped, "events/s"),
    ]
    rows += await ingest.http(url, tmp, 10_000 // scale, piped=piped)
    rows += await ingest.with_tokens(url, tmp, 10_000 // scale, one=one)
    rows += await ingest.client_batches(url, 100_000 // scale, baseline=piped)
    rows += await latency.event_to_dispatch(url, tmp, rate=1000, seconds=6 // scale)
    rows += await latency.cpu_per_event(url, tmp, rate=100, seconds=20 // scale)
    rows += matching.flat_in_contracts(sizes=(10, 100_000 // scale))
    rows += await tracking.burst(url, tmp, 20_000 // scale)
    # A Redis of its own, with nothing else going on: in the shared one, what the benches
    # above left (~250,000 keys, a growing append-only file) read as ~900 B more per
    # partition.
    with procs.fresh_redis() as (own, own_tmp):
        rows += await retention.footprint(own, own_tmp, 20_000 // scale)
    return rows


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
