"""`baton diff`: what a change to the contracts would do, before it is merged.

`baton diff OLD_DIR NEW_DIR`, or `baton diff --against GIT_REF [DIR]` (DIR as it is in
the work tree against DIR as it was at GIT_REF). Per contract: added, removed, or which
aspects changed, and what that does to the live state in Redis (the rules are in
broker/control/apply.py, their preview in broker/control/preview.py).
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import tempfile
from contextlib import ExitStack
from pathlib import Path

from broker.contracts.check import check_configured
from broker.contracts.folder import load_contracts
from broker.contracts.model import Contract
from broker.control.changes import compare, render
from broker.control.live import LiveState
from broker.control.preview import preview
from broker.core.errors import ConfigError
from broker.core.settings import Settings
from broker.runtime import Runtime


def _git(folder: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True,
                          timeout=60, check=False)  # fmt: skip


def contracts_at(folder: Path, ref: str, into: Path) -> tuple[Path, str]:
    """`folder` as it was at Git `ref`, written under `into`; and the ref's commit."""
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such contracts folder")
    top = _git(folder, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        raise ConfigError(f"--against {ref}: {folder} is not in a Git work tree")
    prefix = _git(folder, "rev-parse", "--show-prefix").stdout.decode().strip()
    commit = _git(folder, "rev-parse", "--short=12", "--verify", f"{ref}^{{commit}}")
    if commit.returncode != 0:
        raise ConfigError(f"--against {ref}: not a commit in {top.stdout.decode().strip()}")
    root = Path(top.stdout.decode().strip())
    archive = _git(root, "archive", "--format=tar", ref, "--", prefix or ".")
    old = into / prefix if prefix else into
    if archive.returncode == 0:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(into, filter="data")
    old.mkdir(parents=True, exist_ok=True)  # the folder did not exist then: no contracts
    return old, commit.stdout.decode().strip()


def _old_set(folder: Path) -> tuple[dict[str, Contract], str, int]:
    contract_set, errors = load_contracts(folder)
    return contract_set.by_name(), contract_set.version, len(errors)


async def diff_command(
    settings: Settings,
    folders: tuple[str, ...],
    against: str | None,
    as_json: bool,
    offline: bool,
) -> str:
    with ExitStack() as stack:
        if against is not None:
            if len(folders) > 1:
                raise ConfigError("with --against give at most one folder (the new set)")
            new_dir = Path(folders[0]) if folders else settings.contracts
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="baton-diff-")))
            old_dir, old_label = contracts_at(new_dir, against, tmp)
            old, _, old_errors = _old_set(old_dir)
        else:
            if len(folders) != 2:
                raise ConfigError("give OLD_DIR and NEW_DIR, or --against GIT_REF [DIR]")
            old_dir, new_dir = Path(folders[0]), Path(folders[1])
            if not old_dir.is_dir():
                raise ConfigError(f"{old_dir}: no such contracts folder")
            old, old_label, old_errors = _old_set(old_dir)
        new_set, errors = check_configured(settings, new_dir)
        if errors:
            raise ConfigError("the new contracts are rejected:\n" + "\n".join(map(str, errors)))
        new = new_set.by_name()
        if offline:
            changes, state = compare(old, new), "offline: no live state read"
        else:
            runtime = await Runtime.open(settings)
            try:
                changes = await preview(
                    LiveState(runtime.store), old, new, settings.contracts_retention
                )
            finally:
                await runtime.close()
            state = f"live state of namespace {settings.namespace!r}"
    note = f"; the old set has {old_errors} errors" if old_errors else ""
    if as_json:
        return json.dumps(
            {
                "old_version": old_label,
                "new_version": new_set.version,
                "live": not offline,
                "contracts": [c.as_dict() for c in changes],
            },
            indent=2,
        )
    return render(changes, old_label, new_set.version, state + note)
