"""`api.workers`: several API processes on one port and one Redis, stopped together."""

from __future__ import annotations

from pathlib import Path

import httpx

from broker.embedded_redis import free_port
from tests.conftest import Cluster, stream_events, wait_until

CONTRACT = "name: report\nwhen: warehouse.orders\ntrigger: {target: hook}\n"


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def api_siblings(pid: int) -> list[int]:
    return [c for c in children(pid) if b"--sibling" in Path(f"/proc/{c}/cmdline").read_bytes()]


def listens(pid: int, port: int) -> bool:
    """The process holds a socket listening on `port` (from /proc/net/tcp)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        cols = line.split()
        if cols[1].endswith(f":{port:04X}") and cols[3] == "0A":
            inodes.add(f"socket:[{cols[9]}]")
    return bool(inodes & _fd_targets(pid))


def _fd_targets(pid: int) -> set[str]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            found.add(str(fd.readlink()))
        except OSError:  # closed while we looked
            continue
    return found


def bytes_read(pid: int) -> int:
    """Bytes the process has read, sockets included (`rchar` in /proc/PID/io)."""
    fields = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return int(fields["rchar"])


def test_two_api_workers_share_the_port_and_stop_with_the_first(cluster: Cluster) -> None:
    cluster.port = free_port()
    cluster.write_contracts({"report.yaml": CONTRACT})
    cluster.write_config("http://127.0.0.1:9",
                         api={"host": "127.0.0.1", "port": cluster.port, "workers": 2})  # fmt: skip
    proc = cluster.start("api")
    assert proc.popen is not None
    cluster.wait_healthy()
    [sibling] = wait_until(lambda: api_siblings(proc.popen.pid))  # type: ignore[union-attr]
    wait_until(lambda: listens(sibling, cluster.port))
    before = {pid: bytes_read(pid) for pid in (proc.popen.pid, sibling)}

    def post(i: int) -> None:  # a new connection each time, for the kernel to hand out
        body = {"dataset": "warehouse.orders", "event_id": f"e{i}"}
        assert httpx.post(cluster.api + "/v1/events", json=body, timeout=10).status_code == 202

    for i in range(300):
        post(i)
    grew = {pid: bytes_read(pid) - before[pid] for pid in before}
    assert all(n > 10_000 for n in grew.values()), grew  # both took a share of 300 requests

    ids = {e["event_id"] for e in stream_events(cluster.redis_url)}
    assert ids == {f"e{i}" for i in range(300)}
    proc.stop()
    assert (
        not Path(f"/proc/{sibling}").exists()
        or b"zombie" in Path(f"/proc/{sibling}/status").read_bytes().lower()
    )
