"""The `baton-check` hook of .pre-commit-hooks.yaml, as a contracts repository meets it.

Each test makes a scratch Git repository that lists this repository as a pre-commit hook
repository, installs the hook into `.git/hooks` and commits: a good contract goes in, a
broken one is refused with `file:line: message`.

pre-commit installs Baton into a virtualenv of its own with pip, from PyPI: 15-20 s the
first time, pinned to the versions this suite runs with. Its store lives outside the
project, in `$BATON_PRECOMMIT_CACHE`, else `~/.cache/baton/pre-commit` (beside the
orchestrators' venvs, never in `.baton/`, which is `make run`'s), so later runs reuse
that environment (about 1 s a commit) for as long as the hook repository's commit stays
the same.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

# The first commit installs Baton from PyPI; a slow index should not fail the suite.
pytestmark = pytest.mark.timeout(600)

CACHE = Path(
    os.environ.get("BATON_PRECOMMIT_CACHE", Path.home() / ".cache" / "baton" / "pre-commit")
)
PRE_COMMIT = [sys.executable, "-m", "pre_commit"]
# Everything `pip install .` reads, so a snapshot changes (and the hook environment is
# rebuilt) only when the package does.
BUILD_INPUTS = (".pre-commit-hooks.yaml", "pyproject.toml", "README.md", "broker", "adapters")
# A snapshot's commit must not depend on the clock, so the same content is the same commit
# and pre-commit's store (keyed by repository and commit) finds its environment again.
FIXED_COMMIT = {
    "GIT_AUTHOR_NAME": "baton tests",
    "GIT_AUTHOR_EMAIL": "tests@baton.invalid",
    "GIT_AUTHOR_DATE": "2000-01-01T00:00:00+00:00",
    "GIT_COMMITTER_NAME": "baton tests",
    "GIT_COMMITTER_EMAIL": "tests@baton.invalid",
    "GIT_COMMITTER_DATE": "2000-01-01T00:00:00+00:00",
}

CONFIG = "targets:\n  hook: {kind: webhook, url: 'http://127.0.0.1:9/hook'}\n"
GOOD = "name: ok\npartitioned: daily\nwhen: a\ntrigger: {target: hook}\n"
UNKNOWN_FIELD = (
    "name: broken\npartitioned: daily\nwhen: a\ntrigger:\n  target: hook\n  colour: red\n"
)
BAD_YAML = "name: bad\nwhen: [a, b\ntrigger: {target: hook}\n"


def git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-c", "commit.gpgsign=false", *args],
        cwd=cwd,
        env=_env(),
        check=check,
        capture_output=True,
        text=True,
        timeout=600,  # a commit runs the hook, whose first run installs Baton
    )


def _env() -> dict[str, str]:
    """No BATON_* or GIT_* from the caller (a test may itself run inside a Git hook)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BATON_", "GIT_"))}
    env.update(FIXED_COMMIT)
    env["PRE_COMMIT_HOME"] = str(CACHE / "store")
    # Pins the hook environment to the versions this suite runs with: no resolving, and
    # no surprise from a release made since uv.lock was written.
    env["PIP_CONSTRAINT"] = str(_constraints())
    env["PIP_NO_COMPILE"] = "1"  # the hook runs once per commit; byte-compiling costs more
    return env


def _constraints() -> Path:
    path = CACHE / "constraints.txt"
    pins = sorted(
        f"{dist.metadata['Name']}=={dist.version}"
        for dist in importlib.metadata.distributions()
        if dist.metadata["Name"] and dist.metadata["Name"].lower() != "baton"
    )
    text = "\n".join(pins) + "\n"
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path


@pytest.fixture(scope="module")
def hook_repo() -> tuple[str, str]:
    """This repository as pre-commit fetches it: (path, commit).

    1. A clean work tree (CI's fresh clone): this repository at HEAD, as is.
    2. Local changes (while developing): a snapshot of the work tree's build inputs in a
       repository of its own, as `pre-commit try-repo` does, except that untracked files
       (a new hook manifest) are taken too.
    """
    # Environments of snapshots no test config names any more (pytest keeps the last
    # three runs' tmp_path) go, or every edit of broker/ would leave 120 MB behind.
    subprocess.run([*PRE_COMMIT, "gc"], env=_env(), check=True, capture_output=True)
    status = git(ROOT, "status", "--porcelain", "--untracked-files=all").stdout
    if not status.strip():
        return str(ROOT), git(ROOT, "rev-parse", "HEAD").stdout.strip()
    return _snapshot(CACHE / "hook-repo")


def _snapshot(dest: Path) -> tuple[str, str]:
    listed = git(ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                 "--", *BUILD_INPUTS).stdout  # fmt: skip
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the work tree is listed too
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    git(dest, "init", "--quiet")
    added = git(dest, "add", "--all", check=False)
    assert added.returncode == 0, (os.environ.get("PYTEST_XDIST_WORKER"), added.stderr)
    git(dest, "commit", "--quiet", "--no-verify", "--message", "work tree snapshot")
    return str(dest), git(dest, "rev-parse", "HEAD").stdout.strip()


@pytest.fixture
def contracts_repo(tmp_path: Path, hook_repo: tuple[str, str]) -> Callable[..., Path]:
    """Factory: a contracts repository with baton.yaml, the hook installed, and `files`."""

    def make(files: dict[str, str]) -> Path:
        repo = tmp_path / "contracts-repo"
        (repo / "contracts").mkdir(parents=True)
        url, rev = hook_repo
        hooks = {"repos": [{"repo": url, "rev": rev, "hooks": [{"id": "baton-check"}]}]}
        (repo / ".pre-commit-config.yaml").write_text(yaml.safe_dump(hooks))
        (repo / "baton.yaml").write_text(CONFIG)
        for name, text in files.items():
            (repo / "contracts" / name).write_text(text)
        git(repo, "init", "--quiet")
        subprocess.run([*PRE_COMMIT, "install"], cwd=repo, env=_env(), check=True,
                       capture_output=True)  # fmt: skip
        git(repo, "add", "--all")
        return repo

    return make


def commit(repo: Path) -> subprocess.CompletedProcess[str]:
    return git(repo, "commit", "--message", "contracts", check=False)


def test_a_good_contract_is_committed(contracts_repo: Callable[..., Path]) -> None:
    repo = contracts_repo({"ok.yaml": GOOD})
    result = commit(repo)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "baton check" in output and "Passed" in output
    assert git(repo, "rev-list", "--count", "HEAD").stdout.strip() == "1"


def test_an_unknown_field_is_refused_with_file_and_line(
    contracts_repo: Callable[..., Path],
) -> None:
    repo = contracts_repo({"ok.yaml": GOOD, "broken.yaml": UNKNOWN_FIELD})
    result = commit(repo)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "contracts/broken.yaml:6: trigger.colour" in output
    assert git(repo, "rev-parse", "--verify", "HEAD", check=False).returncode != 0


def test_bad_yaml_is_refused_with_file_and_line(contracts_repo: Callable[..., Path]) -> None:
    repo = contracts_repo({"bad.yaml": BAD_YAML})
    result = commit(repo)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "contracts/bad.yaml:3: not valid YAML" in output
    assert "Failed" in output
