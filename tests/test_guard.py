"""The API's guard against what is not a bad request but a bad situation: Redis killed
under load (503 with Retry-After, one log line when lost and one when back), and
slow clients (deadlines on the head and the body, a bound on bodies in progress).
Real `baton run`, real Redis, real sockets."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter

import httpx

from broker.embedded_redis import RedisProcess, free_port
from tests.conftest import Cluster, wait_until

CONTRACT = """
name: report
partitioned: daily
when: warehouse.orders
trigger: {target: hook}
"""


def test_redis_killed_under_load_gets_503s_with_retry_after_and_two_log_lines(
    cluster: Cluster, redis_server: RedisProcess
) -> None:
    sink = cluster.sink()
    cluster.write_contracts({"report.yaml": CONTRACT})
    cluster.write_config(sink.url)
    proc = cluster.run()
    answers: Counter[tuple[str, int, str | None]] = Counter()
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=cluster.api, timeout=10) as client:
            n = 0
            while not stop.is_set():
                n += 1
                for method, path in (("POST", "/v1/events"), ("GET", "/v1/triggers"),
                                     ("GET", "/metrics"), ("GET", "/readyz")):  # fmt: skip
                    body = {"dataset": "warehouse.orders", "partition": "2026-10-01",
                            "event_id": f"load-{n}"}  # fmt: skip
                    answer = client.request(method, path, json=body if method == "POST" else None)
                    answers[(path, answer.status_code, answer.headers.get("retry-after"))] += 1

    worker = threading.Thread(target=load)
    worker.start()
    wait_until(lambda: answers[("/v1/events", 202, None)] >= 50)
    redis_server.stop()
    wait_until(lambda: answers[("/v1/events", 503, "2")] >= 200)
    redis_server.start()
    before = answers[("/v1/events", 202, None)]
    wait_until(lambda: answers[("/v1/events", 202, None)] > before + 50)
    stop.set()
    worker.join()

    for path in ("/v1/events", "/v1/triggers", "/metrics", "/readyz"):
        assert answers[(path, 503, "2")] > 0, path
    assert not [k for k in answers if k[1] >= 500 and k[1] != 503], answers
    said = [line for line in proc.output().splitlines() if "Redis is" in line]
    assert sum("Redis is unreachable" in line for line in said) == 2, "\n".join(said)  # API, worker
    wait_until(lambda: proc.output().count("Redis is back after") == 2)
    out = proc.output()
    assert "Traceback" not in out, out[max(0, out.find("Traceback") - 400) :][:4000]


def _slow(port: int, head_done: bool) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    if head_done:  # the head, then a body that trickles in
        sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                     b"\r\nContent-Length: 400\r\n\r\n{")  # fmt: skip
    else:  # a head that never ends
        sock.sendall(b"POST /v1/events HTTP/1.1\r\nHo")
    sock.settimeout(0.05)
    return sock


def _still_open(sock: socket.socket) -> bool:
    try:
        sock.sendall(b"x")  # one byte more, as a slow client sends
        data = sock.recv(4096)
    except TimeoutError:
        return True  # nothing to read: the server still waits for us
    except OSError:
        return False
    return data != b"" and b"HTTP/1.1 408" not in data and b"HTTP/1.1 503" not in data


def test_slow_clients_are_cut_off_and_cannot_crowd_out_the_others(cluster: Cluster) -> None:
    cluster.write_contracts({"report.yaml": CONTRACT})
    cluster.port = free_port()
    api = {"host": "127.0.0.1", "port": cluster.port, "head_timeout": "2s",
           "body_timeout": "3s", "max_pending_bodies": 100}  # fmt: skip
    cluster.write_config("http://127.0.0.1:9", api=api)
    cluster.run()
    slow = [_slow(cluster.port, head_done=i % 2 == 0) for i in range(150)]
    started = time.monotonic()
    # Meanwhile, an ordinary client is served.
    event = {"dataset": "warehouse.orders", "partition": "2026-10-01"}
    assert httpx.post(cluster.api + "/v1/events", json=event, timeout=5).status_code == 202
    wait_until(lambda: not any(_still_open(s) for s in slow), timeout=20, every=0.5)
    assert time.monotonic() - started < 10
    for sock in slow:
        sock.close()
    # Past the bound, a request still sending its body is turned away at once.
    crowd = [_slow(cluster.port, head_done=True) for _ in range(100)]
    wait_until(lambda: _answer_of(cluster.port).startswith(b"HTTP/1.1 503"))
    for sock in crowd:
        sock.close()
    assert httpx.post(cluster.api + "/v1/events", json=event, timeout=5).status_code == 202


def _answer_of(port: int) -> bytes:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 400\r\n\r\n{")
    sock.settimeout(2)
    try:
        return sock.recv(4096)
    except TimeoutError:
        return b""
    finally:
        sock.close()
