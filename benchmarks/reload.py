"""How long a contracts reload takes: load, check and index N contract files, then
apply the change to the live state in a real Redis.

    python -m benchmarks.reload [N ...]   (`baton run` over 10,000 and 100,000 files,
                                           then reloads of 1,000 and 10,000 in process)

Loading is the work before the swap (the swap itself is one assignment); events keep
flowing through the old set meanwhile, since loading runs in a thread. Applying runs
after the swap: the first time every contract is new; then 1% of them get a relaxed
condition (all_of -> any_of) with 10 waiting partitions each, which are evaluated again
and fire, while the other 99% carry 10 partitions of state each that must be left alone.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import yaml
from redis.asyncio import Redis

from benchmarks import procs
from benchmarks.report import Row, print_table
from broker.contracts.cache import RACY_S
from broker.control.apply import ChangeApplier
from broker.core.events import Event
from broker.core.settings import Settings
from broker.matching.loaded import Contracts, load_checked
from broker.state.keys import Keys
from broker.state.redis_store import RedisStore

CONTRACT = """name: report_{i}
partitioned: daily
deadline: "+1d09:00"
when:
  all_of:
    - warehouse.orders_{i}
    - {{dataset: warehouse.fx_{j}, where: "metadata.row_count > 0"}}
    - {{dataset: events.clicks_{j}, partitioned: hourly}}
trigger: {{target: hook, body: {{day: "{{{{ partition }}}}"}}}}
"""


TARGETS = {"hook": {"kind": "webhook", "url": "http://127.0.0.1:9"}}


def write(folder: Path, n: int, relaxed: int = 0) -> Settings:
    folder.mkdir(exist_ok=True)
    for i in range(n):
        text = CONTRACT.format(i=i, j=i % 100)
        if i < relaxed:
            text = text.replace("all_of", "any_of")
        (folder / f"report_{i}.yaml").write_text(text)
    return Settings.model_validate(
        {"contracts": str(folder), "contract_limits": {"max_contracts": max(n, 50_000)},
         "targets": TARGETS}
    )  # fmt: skip


def time_reload(n: int, tmp: Path) -> tuple[float, Contracts]:
    settings = write(tmp / f"contracts-{n}", n)
    start = time.perf_counter()
    loaded = load_checked(settings)
    took = time.perf_counter() - start
    assert len(loaded.by_name()) == n
    return took, loaded


async def time_apply(n: int, tmp: Path, first: Contracts, url: str) -> tuple[float, float, int]:
    """(first apply s, apply of a 1% change s, partitions fired by it)."""
    redis = Redis.from_url(url)
    await redis.flushall()
    store = RedisStore(redis, Keys("bench"), max_backlog=10**9, dedup_ttl_s=60)
    applier = ChangeApplier(store, timedelta(days=30))
    start = time.perf_counter()
    await applier.apply(first.by_name(), first.matcher, first.version)
    initial = time.perf_counter() - start
    received = datetime(2026, 10, 20, tzinfo=UTC)
    for day in range(1, 11):  # one input of three for 10 days of every contract: waiting
        ops = []
        for i in range(n):
            event = Event(dataset=f"warehouse.orders_{i}", partition=f"2026-10-{day:02d}",
                          event_id=f"{i}/{day}", occurred_at=received)  # fmt: skip
            ops += first.matcher.plan(event, received, f"{day}-{i}").ops
        for at in range(0, len(ops), 1000):
            await store.record(ops[at : at + 1000], first.version)
    changed = load_checked(write(tmp / f"contracts-{n}", n, relaxed=n // 100))
    start = time.perf_counter()
    done = await applier.apply(changed.by_name(), changed.matcher, changed.version)
    took = time.perf_counter() - start
    assert done is not None and len(done.changes) == n // 100
    await redis.aclose()
    return initial, took, len(done.fired)


def start_and_reload(n: int, tmp: Path, url: str) -> list[Row]:
    """A real `baton run` over N contract files: process start -> /readyz answering,
    the first time (every contract new to the live state) and again; its RSS then; and
    how long after one file changes the process runs the new set. The files are let
    age past RACY_S first, as files checked out well before a start are: one written
    within RACY_S of being read is read again at the next start (contracts/cache.py),
    which made the second start here 4-7 s by how many of the last files written the
    first start read that soon."""
    settings = write(tmp / f"run-{n}", n)
    time.sleep(RACY_S + 0.5)
    port = procs.free_port()
    config = procs.write_config(tmp, url, port, {}, targets=TARGETS,
                                contract_limits={"max_contracts": max(n, 50_000)})  # fmt: skip
    text = yaml.safe_load(config.read_text())
    text["contracts"] = str(settings.contracts)
    config.write_text(yaml.safe_dump(text))
    api, big = f"http://127.0.0.1:{port}", n >= 100_000
    took: dict[str, float] = {}
    for start in ("fresh state", "state there"):
        began = time.perf_counter()
        proc = procs.start(config, "run")
        try:
            try:
                procs.wait_http(f"{api}/readyz", timeout=600, proc=proc)
            except RuntimeError:
                print(config.with_suffix(".run.log").read_text()[-3000:])
                raise
            took[start] = time.perf_counter() - began
            rss = _rss_mib(proc.pid)
            version = _version(api)
            changed = settings.contracts / f"report_{7 if start == 'fresh state' else 8}.yaml"
            changed.write_text(changed.read_text().replace("all_of", "any_of"))
            began = time.perf_counter()
            _wait_version(api, version)
            reload_ms = (time.perf_counter() - began) * 1000
        finally:
            procs.stop(proc)
    return [
        Row(f"baton run start -> ready, {n:,} contracts (fresh state)", took["fresh state"], "s"),
        Row(f"baton run start -> ready, {n:,} contracts (state there)", took["state there"], "s",
            None, "<= 5 s" if big else ""),
        Row(f"  RSS when ready, {n:,} contracts", rss, "MiB", None, "<= 300 MiB" if big else ""),
        Row(f"  one file changed -> the new set runs, {n:,}", reload_ms, "ms", None,
            "<= 1,000 ms" if big else ""),
    ]  # fmt: skip


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _version(api: str) -> str:
    """The set the process runs, from /readyz: /v1/contracts lists every contract, which
    at 100,000 takes the event loop for seconds, and polling it slows the reload down."""
    return str(httpx.get(f"{api}/readyz", timeout=60).json()["contracts_version"])


def _wait_version(api: str, old: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _version(api) != old:
            return
        time.sleep(0.02)
    raise RuntimeError(f"waited {timeout}s for the contracts to move on from {old}")


def main() -> None:
    rows = []
    sizes = [int(a) for a in sys.argv[1:]] or [10_000, 100_000]
    with procs.fresh_redis() as (url, tmp):
        for n in sizes:
            rows += start_and_reload(n, tmp, url)
    with procs.fresh_redis() as (url, tmp):
        for n in (1_000, 10_000):
            took, loaded = time_reload(n, tmp)
            first, change, fired = asyncio.run(time_apply(n, tmp, loaded, url))
            rows.append(Row(f"reload {n:,} contract files (load, check, index)", took * 1000, "ms"))
            rows.append(Row(f"  per file, {n:,} files", took / n * 1e6, "us"))
            rows.append(
                Row(f"  first apply to live state, {n:,} new contracts", first * 1000, "ms")
            )
            what = f"  apply 1% relaxed: {fired:,} of {10 * n:,} waiting partitions fire"
            rows.append(Row(what, change * 1000, "ms"))
    print_table(rows)


if __name__ == "__main__":
    main()
