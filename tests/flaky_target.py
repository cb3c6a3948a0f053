"""A webhook target for fault injection: it answers 503 while `down`, can answer slowly,
and records every call it gets (time, Idempotency-Key) and the most at once."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from broker.embedded_redis import free_port


@dataclass
class Call:
    at: float
    key: str
    status: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FlakyTarget:
    down: bool = False
    delay: float = 0.0
    # Refuse every call with this status, echoing the request's headers in the body
    # (as some receivers do in their error pages).
    refuse: int | None = None
    calls: list[Call] = field(default_factory=list)
    busy: int = 0
    most_at_once: int = 0
    port: int = field(default_factory=free_port)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> FlakyTarget:
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                target._serve(self)

            def log_message(self, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.busy += 1
            self.most_at_once = max(self.most_at_once, self.busy)
            status = 503 if self.down else 200
        if self.delay and not self.down:
            time.sleep(self.delay)
        status = self.refuse or status
        headers = dict(handler.headers.items())
        with self._lock:
            self.busy -= 1
            key = handler.headers.get("idempotency-key", "")
            self.calls.append(Call(time.monotonic(), key, status, headers))
        body = repr(headers).encode() if self.refuse else b""
        handler.send_response(status)
        handler.send_header("content-length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def delivered(self) -> list[str]:
        """Idempotency keys answered 200, in the order they were answered."""
        with self._lock:
            return [c.key for c in self.calls if c.status == 200]

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
