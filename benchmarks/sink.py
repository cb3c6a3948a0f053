"""A raw asyncio webhook sink, run as its own process by the latency benchmark.

    python -m benchmarks.sink PORT OUT_FILE

It notes the arrival time of each request the moment its headers are in, subtracts the
time the body carries (`sent`, epoch seconds; or for an alert, its `baton.deadline`),
answers 200, and writes the delays (seconds, one a line) to OUT_FILE on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}"


async def _serve(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, out: list[float]
) -> None:
    while True:
        head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
        if not head:
            break
        arrived = time.time()
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        body = await reader.readexactly(length)
        out.append(arrived - _since(json.loads(body)))
        writer.write(OK)


def _since(body: dict[str, Any]) -> float:
    if "sent" in body:
        return float(body["sent"])
    return datetime.fromisoformat(body["baton"]["deadline"]).timestamp()


async def _handle(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, out: list[float]
) -> None:
    try:
        await _serve(reader, writer, out)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port: int, path: Path) -> None:
    delays: list[float] = []
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    server = await asyncio.start_server(lambda r, w: _handle(r, w, delays), "127.0.0.1", port)
    async with server:
        await stop.wait()
    path.write_text("\n".join(f"{d:.6f}" for d in delays))


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(int(sys.argv[1]), Path(sys.argv[2])))
