"""The example code shipped for users loads in the orchestrator it is written for."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.orchestrators import envs

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.orchestrators
@pytest.mark.dagster
def test_the_example_dagster_code_location_validates(tmp_path: Path) -> None:
    dagster = envs.with_baton("dagster") / "dagster"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BATON_", "VIRTUAL_ENV"))}
    example = ROOT / "examples" / "dagster" / "definitions.py"
    done = subprocess.run(
        [str(dagster), "definitions", "validate", "-f", str(example)],
        cwd=tmp_path, env=env | {"DAGSTER_HOME": str(tmp_path)}, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All code locations passed validation" in done.stdout + done.stderr
