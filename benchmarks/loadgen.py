"""A minimal HTTP/1.1 keep-alive load generator on raw asyncio streams.

httpx spends more CPU per request than the server under test; on a 2-core machine that
would measure the client. This sends pre-built requests and reads just enough of each
answer (status line, Content-Length, body) to keep the connection in step.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from urllib.parse import urlsplit


def request(host: str, path: str, body: bytes, token: str | None = None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"{auth}Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _connection(url: str, make: Callable[[int], bytes], counter: list[int], n: int) -> None:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        while counter[0] < n:
            i = counter[0]
            counter[0] += 1
            writer.write(make(i))
            status = await reader.readline()
            if not status.startswith(b"HTTP/1.1 202"):
                raise RuntimeError(f"request {i}: {status!r}")
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
    finally:
        writer.close()


async def post_many(url: str, make: Callable[[int], bytes], n: int, connections: int) -> float:
    """Send `n` requests over `connections` keep-alive connections; requests per second."""
    counter = [0]
    start = time.perf_counter()
    await asyncio.gather(*(_connection(url, make, counter, n) for _ in range(connections)))
    return n / (time.perf_counter() - start)
