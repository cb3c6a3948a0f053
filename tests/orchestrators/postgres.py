"""A PostgreSQL for Airflow's metadata, run from the binaries in the `pgserver` wheel.

Airflow on SQLite is for trying it out, and under the adapter tests it wedged: its API
server commits the audit-log row of a POST synchronously on the event loop
(`api_fastapi/logging/decorators.py`) while another request's write transaction waits
for that loop to be committed, so SQLite's one writer lock stays taken until the busy
timeout. Meanwhile every other process queues on it: the scheduler's heartbeat fails and
the scheduler exits, and every run after it stays queued (measured: a dag run POST that
timed out for 2 minutes; CI lost both Airflow tests that way). PostgreSQL has no single
writer lock, and it is what an Airflow deployment runs on.

The wheel (PyPI `pgserver`) carries initdb, postgres and pg_isready. Postgres refuses to
run as root, so as root the binaries are copied to a folder every user may read and the
server runs as `nobody`, with its data in a temp folder of its own.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.orchestrators import envs

USER = "postgres"  # the database role Airflow connects as (trust auth, loopback only)


def run_as() -> str | None:
    """The system user postgres runs as: ours, unless we are root."""
    return "nobody" if os.geteuid() == 0 else None


def binaries(venv_bin: Path) -> Path:
    """The folder of initdb/postgres from the wheel in `venv_bin`'s venv, where the user
    the server runs as can execute them."""
    site = next((venv_bin.parent / "lib").glob("python3*/site-packages"))
    if run_as() is None:
        return site / "pgserver" / "pginstall" / "bin"
    shared = Path(tempfile.gettempdir()) / f"baton-postgres-{venv_bin.parent.name}"
    if not (shared / "ready").exists():
        partial = shared.with_name(f"{shared.name}.{os.getpid()}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        # the libraries' rpath is $ORIGIN/../../../pgserver.libs: keep the layout
        shutil.copytree(site / "pgserver" / "pginstall", partial / "pgserver" / "pginstall")
        shutil.copytree(site / "pgserver.libs", partial / "pgserver.libs")
        subprocess.run(["chmod", "-R", "a+rX", str(partial)], check=True)
        (partial / "ready").write_text("")
        shutil.rmtree(shared, ignore_errors=True)
        partial.rename(shared)
    return shared / "pgserver" / "pginstall" / "bin"


def _chown_tree(path: Path, user: str | None) -> None:
    if user is None:
        return
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        for name in (root, *(os.path.join(root, n) for n in (*dirs, *files))):
            os.chown(name, entry.pw_uid, entry.pw_gid)


def data_dir() -> Path:
    """An empty folder for one server's data, readable by it, removed at exit."""
    path = Path(tempfile.mkdtemp(prefix="baton-pgdata-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    _chown_tree(path, run_as())
    return path


def command(bin_dir: Path, data: Path, port: int) -> list[str]:
    """`postgres` on loopback, durability off (test data, thrown away)."""
    return [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port),
            "-h", "127.0.0.1", "-k", str(data), "-c", "fsync=off",
            "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "max_connections=200"]  # fmt: skip


def ready(bin_dir: Path, port: int) -> bool:
    probe = [str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]
    return subprocess.run(probe, check=False).returncode == 0


def url(port: int) -> str:
    return f"postgresql+psycopg2://{USER}@127.0.0.1:{port}/postgres"


def prepared(bin_dir: Path, data: Path, port: int, template: Path, migrate: list[str],
             env: dict[str, str], log: Path) -> None:  # fmt: skip
    """`data` holding a migrated Airflow database: copied from `template`, else made
    (initdb, then `migrate` against a server started for it) and kept as the template."""
    user = run_as()
    if template.exists():
        shutil.copytree(template, data, dirs_exist_ok=True)
        _chown_tree(data, user)
        return
    init = [str(bin_dir / "initdb"), "-D", str(data), "-U", USER, "--auth=trust",
            "-E", "utf8", "--no-sync"]  # fmt: skip
    done = subprocess.run(init, user=user, cwd=data, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"initdb failed:\n{done.stdout}\n{done.stderr}")
    with log.open("ab") as out:
        server = subprocess.Popen(command(bin_dir, data, port), user=user, cwd=data,
                                  stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not ready(bin_dir, port):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        cwd = Path(env["AIRFLOW_HOME"]).parent
        done = subprocess.run(migrate, env=env, cwd=cwd, capture_output=True, text=True,
                              check=False)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{done.stderr[-3000:]}")
    finally:
        server.terminate()  # SIGTERM: smart shutdown, the files whole
        server.wait(timeout=60)
    partial = template.with_name(f"{template.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(data, partial, ignore=shutil.ignore_patterns("postmaster.pid", ".s.PGSQL*"))
    shutil.rmtree(template, ignore_errors=True)
    partial.rename(template)  # whole or not at all, should another run read it meanwhile


def template_for(venv_bin: Path) -> Path:
    return envs.cache_dir() / f"{venv_bin.parent.name}-pgdata"
