"""A small TCP fault proxy in front of a real orchestrator, for the fault tests.

It runs its own asyncio loop in a thread, so a test can change its mode at any time:

    pass      relay bytes both ways (the orchestrator answers)
    503       answer every request `503 Service Unavailable` without relaying it
    reset     accept and drop the connection at once (a reset mid-call)
    hang      accept and never answer (the caller's timeout fires)
    withhold  relay everything, but once a request containing `withhold_match` (e.g.
              b"create_flow_run") has gone up, keep the orchestrator's answers on that
              connection from the caller: the call happened, the caller cannot know

Nothing here imitates an orchestrator: it only breaks the wire to a real one.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from broker.embedded_redis import free_port

_503 = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 19\r\nConnection: close\r\n\r\nservice unavailable"
)


class FaultProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.mode = "pass"
        self.withhold_match = b""
        self.connections = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            server.close()
            for writer in self._writers:
                writer.transport.abort()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(server.wait_closed())
            loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        mode = self.mode
        self._writers.add(writer)
        try:
            if mode == "reset":
                writer.transport.abort()
                return
            if mode == "hang":
                await reader.read()  # until the caller gives up and closes
                return
            if mode == "503":
                await reader.readuntil(b"\r\n\r\n")
                writer.write(_503)
                await writer.drain()
                return
            await self._relay(reader, writer, answer=mode == "pass")
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def _relay(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answer: bool
    ) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers.add(up_writer)
        withheld = not answer and not self.withhold_match

        async def upstream() -> None:
            nonlocal withheld
            while data := await reader.read(65536):
                if not answer and self.withhold_match and self.withhold_match in data:
                    withheld = True
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()

        async def downstream() -> None:
            while data := await up_reader.read(65536):
                if not withheld:
                    writer.write(data)
                    await writer.drain()
            writer.close()

        try:
            await asyncio.gather(upstream(), downstream(), return_exceptions=True)
        finally:
            self._writers.discard(up_writer)
            up_writer.close()


@contextlib.contextmanager
def fault_proxy(upstream_port: int) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream_port).start()
    try:
        yield proxy
    finally:
        proxy.stop()
