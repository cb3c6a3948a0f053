"""Real Airflow 3, Dagster and Prefect servers on loopback, for the adapter tests.

Each runs from its own cached venv (`envs.py`) in its own process group, with its
state in a temp folder, and is stopped as a whole (scheduler, workers and all).
`stop()` and `start()` may be called again: the fault tests take a server away in the
middle of a dispatch and bring it back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx

from broker.embedded_redis import free_port
from tests.orchestrators import envs, postgres

HERE = Path(__file__).resolve().parent


@dataclass
class Proc:
    """One long-running command of a server (its API, scheduler, runner, ...)."""

    args: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    user: str | None = None  # the system user it runs as (postgres will not run as root)
    # when it answers: the next part of the server starts only then
    ready: Callable[[], bool] | None = None

    def start(self, env: dict[str, str], cwd: Path) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, user=self.user,
            )  # fmt: skip

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.popen.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


@dataclass
class Server:
    name: str
    home: Path
    port: int
    env: dict[str, str]
    procs: list[Proc]
    health: str
    ready: Callable[[Server], bool] = lambda server: True
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180) -> Server:
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            proc.start(self.env, self.home)
            while proc.ready is not None and not proc.ready():
                if not proc.alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name}: {proc.args[:3]} not ready\n{self.tail()}")
                time.sleep(0.1)
        while time.monotonic() < deadline:
            dead = [p for p in self.procs if not p.alive()]
            if dead:
                raise RuntimeError(f"{self.name}: {dead[0].args[:3]} exited\n{self.tail()}")
            if _healthy(self.health) and self.ready(self):
                return self
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} not healthy within {timeout}s\n{self.tail()}")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def tail(self, lines: int = 40) -> str:
        out = []
        for proc in self.procs:
            if proc.log.exists():
                text = proc.log.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {proc.log.name}\n" + "\n".join(text))
        return "\n".join(out)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


# Where the orchestrators' task-side helpers publish to: a port picked once per test
# session, on which the publishing tests run their Baton, with this producer token.
BATON_PORT = free_port()
BATON_TOKEN = "orchestrator-producer-token"


def baton_producer(datasets: list[str]) -> dict[str, object]:
    """The `producers:` entry that lets the orchestrators' helpers publish `datasets`."""
    return {"name": "orchestrators", "token": BATON_TOKEN, "datasets": datasets}


def _base_env(bin_dir: Path, home: Path) -> dict[str, str]:
    keep = ("LANG", "LC_ALL", "TZ", "TMPDIR")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(PATH=f"{bin_dir}:/usr/local/bin:/usr/bin:/bin", HOME=str(home))
    env.update(
        BATON_URL=f"http://127.0.0.1:{BATON_PORT}",
        BATON_TOKEN=BATON_TOKEN,
        BATON_SPOOL_DIR=str(home / "baton-spool"),
    )
    return env


# -- Prefect -----------------------------------------------------------------------
PREFECT_AUTH = "baton:prefect-secret"


def prefect(home: Path) -> Server:
    bin_dir = envs.with_baton("prefect")
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = _base_env(bin_dir, home) | {
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_API_AUTH_STRING": PREFECT_AUTH,
        "PREFECT_API_AUTH_STRING": PREFECT_AUTH,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    server = Proc(
        [str(bin_dir / "prefect"), "server", "start", "--host", "127.0.0.1",
         "--port", str(port), "--no-services"],
        home / "prefect-server.log",
    )  # fmt: skip
    return Server("prefect", home, port, env, [server], f"{api}/health", extra={"api": api})


def prefect_runner(server: Server) -> Proc:
    """`flow.serve()` of the test flows: registers their deployments and runs them."""
    bin_dir = envs.with_baton("prefect")
    proc = Proc(
        [str(bin_dir / "python"), str(HERE / "prefect_flows.py")],
        server.home / "prefect-runner.log",
    )
    proc.start(server.env, server.home)
    return proc


def prefect_deployment_ready(server: Server, name: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    auth = tuple(PREFECT_AUTH.split(":", 1))
    while time.monotonic() < deadline:
        try:
            got = httpx.get(f"{server.extra['api']}/deployments/name/{name}", auth=auth)
            if got.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"deployment {name} not registered\n{server.tail()}")


# -- Dagster -----------------------------------------------------------------------
# A second code location that fails to load, as after a bad deploy: named after its file.
DAGSTER_BROKEN_LOCATION = "broken_location.py"


def dagster(home: Path) -> Server:
    bin_dir = envs.with_baton("dagster")
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster").mkdir(exist_ok=True)
    port = free_port()
    env = _base_env(bin_dir, home) | {"DAGSTER_HOME": str(home / "dagster")}
    # The daemon's run queue looks for queued runs every second (5 s by default). Its
    # asset and freshness daemons, for declarative automation and freshness checks that
    # the test definitions do not use, are off: they tick on idle (Dagster as a whole
    # took 16% of a core on idle with them on; what they alone cost is not measured).
    (home / "dagster" / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\nrun_queue:\n  dequeue_interval_seconds: 1\n"
        "auto_materialize:\n  enabled: false\n  use_sensors: false\n"
        "freshness:\n  enabled: false\n"
    )
    broken = home / DAGSTER_BROKEN_LOCATION
    broken.write_text('raise RuntimeError("this code location does not load")\n')
    dev = Proc(
        [str(bin_dir / "dagster"), "dev", "-f", str(HERE / "dagster_defs.py"),
         "-f", str(broken), "-h", "127.0.0.1", "-p", str(port)],
        home / "dagster.log",
    )  # fmt: skip

    def loaded(server: Server) -> bool:
        query = "{repositoriesOrError {... on RepositoryConnection {nodes {name}}}}"
        try:
            got = httpx.post(f"{server.url}/graphql", json={"query": query}, timeout=5)
            return bool(got.json()["data"]["repositoriesOrError"].get("nodes"))
        except (httpx.HTTPError, KeyError, ValueError):
            return False

    return Server("dagster", home, port, env, [dev], f"http://127.0.0.1:{port}/server_info",
                  ready=loaded)  # fmt: skip


# -- Airflow -----------------------------------------------------------------------
AIRFLOW_USER, AIRFLOW_PASSWORD = "admin", "admin-secret"
AIRFLOW_JWT_SECONDS = 8


def airflow(home: Path, jwt_seconds: int = 86400) -> Server:
    bin_dir = envs.with_baton("airflow")
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({AIRFLOW_USER: AIRFLOW_PASSWORD}))
    pg_bin, pg_data, pg_port = postgres.binaries(bin_dir), postgres.data_dir(), free_port()
    env = _base_env(bin_dir, home) | {
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.url(pg_port),
        "AIRFLOW__CORE__DAGS_FOLDER": str(HERE / "airflow_dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{AIRFLOW_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        # The tests make API tokens die fast, to see Baton renew them (default: a day).
        "AIRFLOW__API_AUTH__JWT_EXPIRATION_TIME": str(jwt_seconds),
        "AIRFLOW__API_AUTH__JWT_LEEWAY": "0",
        # Fixed, not generated: the three processes start at once, and each would write
        # an airflow.cfg of its own with its own secrets (tasks then fail "Invalid auth
        # token": the scheduler signs with one secret, the API server checks another).
        "AIRFLOW__API_AUTH__JWT_SECRET": "baton-tests-jwt-secret",
        "AIRFLOW__API__SECRET_KEY": "baton-tests-api-secret",
        "AIRFLOW__CORE__FERNET_KEY": "YmF0b24tdGVzdHMtZmVybmV0LWtleS0zMi1ieXRlcyE=",
    }
    airflow_bin = str(bin_dir / "airflow")
    pg_log = home / "postgres.log"
    postgres.prepared(pg_bin, pg_data, pg_port, postgres.template_for(bin_dir),
                      [airflow_bin, "db", "migrate"], env, pg_log)  # fmt: skip
    procs = [
        Proc(postgres.command(pg_bin, pg_data, pg_port), pg_log, user=postgres.run_as(),
             ready=partial(postgres.ready, pg_bin, pg_port)),
        Proc([airflow_bin, "api-server", "-H", "127.0.0.1", "-p", str(port)],
             home / "airflow-api.log"),
        Proc([airflow_bin, "scheduler", "--skip-serve-logs"], home / "airflow-scheduler.log"),
        Proc([airflow_bin, "dag-processor"], home / "airflow-dag-processor.log"),
    ]  # fmt: skip
    return Server(
        "airflow", home, port, env, procs, f"http://127.0.0.1:{port}/api/v2/monitor/health"
    )
