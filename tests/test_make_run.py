"""`make run` as a user runs it: the quickstart's commands print what the README shows,
and a signal to any one of its processes stops them all.

Each test runs the real Makefile and scripts/run.sh in a copy of the project's top level
(the same .venv), with the API and sink ports moved to free ones so that a `make run`
of the user's own is not disturbed.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from broker.embedded_redis import free_port
from tests.conftest import ROOT, http_up, wait_until

COPIED = ["Makefile", "pyproject.toml", "uv.lock", "baton.yaml", "scripts", "contracts"]


@dataclass
class House:
    root: Path
    api_port: int
    sink_port: int
    make: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.root / "make.log").open("wb") as log:  # make keeps its own copy
            self.make = subprocess.Popen(
                [*FROM_A_TERMINAL, "make", "run"], cwd=self.root, stdout=log,
                stderr=subprocess.STDOUT, env=_env(), start_new_session=True,
            )  # fmt: skip
        wait_until(
            lambda: self._up() or self.make.poll() is not None,  # type: ignore[union-attr]
            timeout=120, what="make run: the API's /healthz and the sink to answer",
        )  # fmt: skip
        assert self.make.poll() is None, self.output()

    def _up(self) -> bool:
        return http_up(f"{self.api}/healthz") and http_up(f"{self.sink}/")

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def sink(self) -> str:
        return f"http://127.0.0.1:{self.sink_port}"

    def output(self) -> str:
        return (self.root / "make.log").read_text(errors="replace")

    def tree(self) -> dict[str, int]:
        """The pids of make run's processes, by role."""
        assert self.make is not None
        found = {"make": self.make.pid}
        for pid in _descendants(self.make.pid):
            line = _cmdline(pid)
            for role, mark in ROLES.items():
                if mark in line and role not in found:
                    found[role] = pid
        return found


# `make run` as typed at a terminal: SIGINT and SIGQUIT at their defaults. A test runner
# started in the background by a script (`.ci/run &`) has them ignored, children inherit
# that through exec, and a shell cannot trap a signal ignored on entry; so make is exec'd
# from a Python that puts them back (same pid, no preexec_fn in a threaded worker).
FROM_A_TERMINAL = [
    sys.executable, "-c",
    "import os, signal, sys\n"
    "for sig in (signal.SIGINT, signal.SIGQUIT): signal.signal(sig, signal.SIG_DFL)\n"
    "os.execvp(sys.argv[1], sys.argv[1:])",
]  # fmt: skip

ROLES = {"run.sh": "scripts/run.sh", "baton": "baton run", "sink": "baton sink",
         "redis": "redis-server"}  # fmt: skip


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("BATON_", "MAKE"))}


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        kids = _children(todo.pop())
        out += kids
        todo += kids
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def house(tmp_path: Path) -> Iterator[House]:
    api_port, sink_port = free_port(), free_port()
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name)
        else:
            shutil.copy2(source, tmp_path / name)  # keeps mtimes: make sees setup done
    for name in (".venv", ".tools"):
        (tmp_path / name).symlink_to(ROOT / name)
    for path in [tmp_path / "baton.yaml", tmp_path / "scripts/run.sh",
                 *(tmp_path / "contracts").glob("*.yaml")]:  # fmt: skip
        text = path.read_text().replace(":8000", f":{api_port}").replace("8765", str(sink_port))
        path.write_text(text.replace("port: 8000", f"port: {api_port}"))
    built = House(tmp_path, api_port, sink_port)
    yield built
    if built.make is not None and built.make.poll() is None:
        os.killpg(built.make.pid, signal.SIGKILL)
        built.make.wait()


@pytest.mark.parametrize("role", ["make", "run.sh", "baton", "sink", "redis"])
def test_a_sigint_to_any_process_of_make_run_stops_them_all(house: House, role: str) -> None:
    house.start()
    tree = wait_until(
        lambda: t if len(t := house.tree()) == len(ROLES) + 1 else None,
        timeout=60, what="make run's five processes: make, run.sh, baton, the sink, redis",
    )  # fmt: skip
    os.kill(tree[role], signal.SIGINT)
    assert house.make is not None
    try:
        house.make.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"make run still running 60 s after a SIGINT to {role}:\n{house.output()}")
    deadline = time.monotonic() + 30
    while (left := {r: p for r, p in tree.items() if _alive(p)}) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"still running after a SIGINT to {role}: {left}\n{house.output()}"


def test_the_quickstart_prints_what_the_readme_shows(house: House) -> None:
    """The README's first-trigger session, command by command, against a real make run:
    a publish runs once; a command that reads waits (a while) for what the README shows,
    since the runs it lists end a moment later."""
    house.start()
    readme = (ROOT / "README.md").read_text()
    session = readme.split("## Your first trigger", 1)[1].split("\n## ", 1)[0]
    for command, shown in _commands(session):
        printed = (
            _run(house, command) if " publish " in command else _settled(house, command, shown)
        )
        assert _same(printed, shown), f"$ {command}\nREADME shows:\n{shown}\nprinted:\n{printed}"


def _settled(house: House, command: str, shown: str, timeout: float = 30.0) -> str:
    """What `command` prints once it prints what the README shows, or after `timeout`."""
    deadline = time.monotonic() + timeout
    while not _same(printed := _run(house, command), shown) and time.monotonic() < deadline:
        time.sleep(0.2)
    return printed


def _commands(session: str) -> list[tuple[str, str]]:
    """($ command, the output the README shows under it) from its console blocks."""
    found: list[tuple[str, str]] = []
    for block in re.findall(r"```console\n(.*?)```", session, re.S):
        for part in re.split(r"^\$ ", block, flags=re.M)[1:]:
            command, _, shown = part.partition("\n")
            found.append((command.strip(), shown.rstrip("\n")))
    assert len(found) >= 8, "the README's quickstart has lost its console blocks"
    return found


def _run(house: House, command: str) -> str:
    """`command` as the README writes it, on this house's ports."""
    moved = command.replace("8765", str(house.sink_port))
    result = subprocess.run(["sh", "-c", moved], cwd=house.root, env=_env(),
                            capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    return result.stdout.replace(str(house.sink_port), "8765")


def _same(printed: str, shown: str) -> bool:
    """Whether `printed` is `shown`, each `…` standing for a time, an id or a digest."""
    pattern = "".join(
        r"\S+?" if piece == "…" else re.escape(piece) for piece in re.split(r"(…)", shown)
    )
    return re.fullmatch(pattern, printed.rstrip("\n")) is not None
