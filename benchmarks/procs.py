"""Start Baton processes for a benchmark, with a config written to a temp folder."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from broker.embedded_redis import RedisProcess, free_port

BATON = str(Path(sys.executable).parent / "baton")


@contextmanager
def fresh_redis(prefix: str = "baton-bench-") -> Iterator[tuple[str, Path]]:
    """A temp folder with a redis-server of its own in it: (its URL, the folder); both
    are gone afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        tmp = Path(folder)
        server = RedisProcess(data_dir=tmp / "redis", port=free_port()).start()
        try:
            yield server.url, tmp
        finally:
            server.stop()


@contextmanager
def neighbour() -> Iterator[None]:
    """A process burning one core for as long as the block runs: the load a shared host
    has beside Baton (a batch job, a compiler, another service)."""
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        burner.kill()
        burner.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process (all its threads) has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_config(
    tmp: Path, redis_url: str, port: int, contracts: dict[str, str], **extra: Any
) -> Path:
    folder = tmp / f"contracts-{port}"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in contracts.items():
        (folder / name).write_text(text)
    config = {
        "redis_url": redis_url,
        "contracts": str(folder),
        "api": {"host": "127.0.0.1", "port": port},
        "max_backlog": 10_000_000,
        "data_dir": str(tmp / f"data-{port}"),  # the contracts snapshot: gone with tmp
        **extra,
    }
    path = tmp / f"baton-{port}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start(config: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    env["BATON_CONFIG"] = str(config)
    with config.with_suffix(f".{args[0]}.log").open("wb") as log:
        return subprocess.Popen([BATON, *args], env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_http(url: str, timeout: float = 20, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Until `url` answers below 500; `proc`, the process that serves it, must not exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: its process exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=0.5).status_code < 500:
                return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
