"""Each orchestrator in its own virtualenv, built once and cached between test runs.

    python -m tests.orchestrators.envs [airflow|dagster|prefect ...]   # build ahead

Their pins conflict with each other and with Baton's (FastAPI above all), so none of
them can live in Baton's own environment. A venv is keyed by a hash of its
requirements, so changing a pin builds a new one; it is used only once a `ready` file
says the install finished. The cache lives in `$BATON_ORCHESTRATOR_CACHE`, else
`~/.cache/baton/orchestrators`.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UV = ROOT / ".tools" / "bin" / "uv"


@dataclass(frozen=True)
class Spec:
    name: str
    requirements: tuple[str, ...]
    python: str = "python3.11"

    @property
    def key(self) -> str:
        text = "\n".join((self.python, *self.requirements))
        return f"{self.name}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


POSTGRES = ("pgserver==0.1.4", "psycopg2-binary==2.9.13", "asyncpg==0.32.0")

SPECS = {
    # with PostgreSQL for its metadata (postgres.py: why not SQLite)
    "airflow": Spec("airflow", ("apache-airflow==3.3.2", *POSTGRES)),
    "dagster": Spec(
        "dagster", ("dagster==1.13.27", "dagster-webserver==1.13.27", "dagster-graphql==1.13.27")
    ),
    # Plain `prefect` resolves to 3.8.8 here, whose server breaks on FastAPI >= 0.151.
    "prefect": Spec("prefect", ("prefect==3.8.8", "fastapi==0.150.0")),
}


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "baton" / "orchestrators"
    return Path(os.environ.get("BATON_ORCHESTRATOR_CACHE", default))


def ensure(name: str) -> Path:
    """The venv for `name`, built if it is missing; returns its `bin` folder."""
    spec = SPECS[name]
    venv = cache_dir() / spec.key
    ready = venv / "ready"
    if ready.exists():
        return venv / "bin"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with (venv.parent / f"{spec.key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test run may be building it
        if ready.exists():
            return venv / "bin"
        shutil.rmtree(venv, ignore_errors=True)
        started = time.monotonic()
        _run([str(UV), "venv", "--quiet", "--python", spec.python, str(venv)])
        _run(
            [str(UV), "pip", "install", "--quiet", "--compile-bytecode",
             "--python", str(venv / "bin" / "python"), *spec.requirements]
        )  # fmt: skip
        ready.write_text(f"built in {time.monotonic() - started:.0f}s\n")
    return venv / "bin"


_WITH_BATON: set[str] = set()


def with_baton(name: str) -> Path:
    """The venv for `name` with this checkout's publish helpers in it, installed the way
    the README tells users to (`pip install httpx` then `pip install --no-deps baton`),
    fresh once per test session so the code under test is the code in the tree."""
    bin_dir = ensure(name)
    if name not in _WITH_BATON:
        python = str(bin_dir / "python")
        _run([str(UV), "pip", "install", "--quiet", "--python", python, "httpx"])
        _run(
            [str(UV), "pip", "install", "--quiet", "--python", python, "--no-deps",
             "--reinstall-package", "baton", "--refresh-package", "baton", str(ROOT)]
        )  # fmt: skip
        _WITH_BATON.add(name)
    return bin_dir


def _run(command: list[str]) -> None:
    env = {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")
    }
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} failed:\n{done.stdout}\n{done.stderr}")


if __name__ == "__main__":
    for arg in sys.argv[1:] or list(SPECS):
        print(arg, ensure(arg))
