"""What docs/ publishes holds: the schema is `baton schema`'s, the example CI workflow
runs commands `baton` accepts, and the snippets of "Keeping contracts in Git" work."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import click
import jsonschema_rs
import pytest
import yaml

from broker.cli.main import main
from broker.core.settings import load_settings
from tests.conftest import BATON, ROOT

DOCS = ROOT / "docs"
SCHEMA = DOCS / "contract.schema.json"
WORKFLOW = DOCS / "examples" / "contracts-ci.yml"
PAGE = DOCS / "contracts-in-git.md"


def baton(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {"PATH": str(Path(BATON).parent) + ":/usr/bin:/bin"}  # no BATON_* from outside
    return subprocess.run([BATON, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip


def test_the_published_schema_is_what_baton_schema_prints() -> None:
    printed = baton("schema")
    assert printed.returncode == 0, printed.stderr
    assert SCHEMA.read_text() == printed.stdout, (
        "docs/contract.schema.json is out of date: regenerate it with `make schema` "
        "(or `baton schema > docs/contract.schema.json`) and commit it"
    )


def test_the_published_schema_names_itself() -> None:
    schema = json.loads(SCHEMA.read_text())
    assert schema["title"] == "Baton contract"
    assert set(schema["required"]) == {"name", "when", "trigger"}


def _example_contracts() -> list[Any]:
    return [pytest.param(doc, id=path.name)
            for path in sorted((ROOT / "contracts").glob("*.y*ml"))
            for doc in yaml.safe_load_all(path.read_text())]  # fmt: skip


@pytest.mark.parametrize("contract", _example_contracts())
def test_the_example_contracts_are_valid_against_the_published_schema(contract: Any) -> None:
    validator = jsonschema_rs.validator_for(json.loads(SCHEMA.read_text()))
    assert [e.message for e in validator.iter_errors(contract)] == []


def test_the_published_schema_catches_an_unknown_field() -> None:
    validator = jsonschema_rs.validator_for(json.loads(SCHEMA.read_text()))
    contract = {"name": "x", "when": {"dataset": "a"}, "trigger": {"target": "t"}, "colour": 1}
    assert any("colour" in e.message for e in validator.iter_errors(contract))


# -- the example CI workflow ----------------------------------------------------------------


def _workflow() -> dict[Any, Any]:
    data: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    return data


def _steps() -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = _workflow()["jobs"]["contracts"]["steps"]
    return steps


def _baton_lines() -> list[str]:
    runs = [step.get("run", "") for step in _steps()]
    return [line.strip() for run in runs for line in run.splitlines()
            if line.strip().startswith("baton ")]  # fmt: skip


def _argv(line: str) -> list[str]:
    """The arguments of a shell line, GitHub expressions filled in, redirection dropped."""
    line = re.sub(r"\$\{\{[^}]*\}\}", "main", line)
    return shlex.split(re.split(r"\s[>|]|&&", line)[0])[1:]


def test_the_workflow_is_a_github_actions_workflow_for_pull_requests() -> None:
    workflow = _workflow()
    triggers = workflow["on"] if "on" in workflow else workflow[True]  # YAML 1.1: `on` is true
    assert "pull_request" in triggers
    assert workflow["permissions"]["pull-requests"] == "write"
    steps = _steps()
    checkout = next(s for s in steps if s.get("uses", "").startswith("actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0
    python = next(s for s in steps if s.get("uses", "").startswith("actions/setup-python"))
    assert python["with"]["python-version"] == "3.11"
    runs = "\n".join(s.get("run", "") for s in steps)
    assert "gh pr comment" in runs and "--body-file" in runs


def test_the_workflow_checks_offline_online_and_diffs_against_the_base_branch() -> None:
    commands = [" ".join(_argv(line)) for line in _baton_lines()]
    assert "check contracts" in commands
    assert "--config staging.yaml check --online contracts" in commands
    assert "--config staging.yaml diff --against origin/main contracts" in commands


def _parse(argv: list[str]) -> str:
    """Parse argv as `baton` would, invoking nothing; the subcommand's name."""
    ctx = click.Context(main, info_name="baton")
    rest = click.Command.parse_args(main, ctx, list(argv))  # the group's own options
    name, command, args = main.resolve_command(ctx, rest)
    assert name is not None and command is not None
    command.make_context(name, args, parent=ctx)
    return name


@pytest.mark.parametrize("line", _baton_lines())
def test_every_baton_command_of_the_workflow_parses(line: str) -> None:
    argv = _argv(line)
    if "diff" in argv and "diff" not in main.commands:
        pytest.skip("`baton diff` is not in broker/cli/main.py yet")
    try:
        _parse(argv)
    except click.UsageError as exc:
        pytest.fail(f"{WORKFLOW.name}: `{line}`: {exc.format_message()}")


def test_a_global_option_after_the_command_is_refused() -> None:
    with pytest.raises(click.NoSuchOption):
        _parse(["check", "contracts", "--config", "staging.yaml"])


# -- the "Keeping contracts in Git" page -----------------------------------------------------


def _snippets() -> dict[str, str]:
    """The page's YAML blocks that start with a `# path` comment, by path."""
    blocks = re.findall(r"```yaml\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)
    named = (re.match(r"# ([\w./-]+)", block) for block in blocks)
    return {m.group(1): block for m, block in zip(named, blocks, strict=True) if m}


def test_the_page_has_every_file_of_a_contracts_repository() -> None:
    assert set(_snippets()) >= {
        "baton.yaml",
        "staging.yaml",
        "contracts/revenue_report.yaml",
        ".pre-commit-config.yaml",
    }


def test_the_page_repository_passes_baton_check(tmp_path: Path) -> None:
    for name, text in _snippets().items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    result = baton("check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "1 contract OK" in result.stdout


def test_the_page_staging_config_takes_its_secrets_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "staging.yaml"
    path.write_text(_snippets()["staging.yaml"])
    env = {"STAGING_REDIS_URL": "redis://staging:6379/0", "AIRFLOW_PASSWORD": "pw",
           "PREFECT_AUTH": "user:pw"}  # fmt: skip
    settings = load_settings(path, env=env)
    assert settings.redis_url == "redis://staging:6379/0"
    assert set(settings.targets) == set(load_settings(_write(tmp_path, "baton.yaml")).targets)


def _write(folder: Path, name: str) -> Path:
    (folder / name).write_text(_snippets()[name])
    return folder / name


def test_the_page_pre_commit_config_names_our_hook() -> None:
    hooks = {hook["id"] for hook in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    config = yaml.safe_load(_snippets()[".pre-commit-config.yaml"])
    assert {hook["id"] for hook in config["repos"][0]["hooks"]} <= hooks


def test_the_compose_deployment_is_closed_by_default_with_the_tokens_compose_sets() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = {k: str(v) for k, v in compose["services"]["baton"]["environment"].items()}
    settings = load_settings(ROOT / "deploy" / "baton.compose.yaml", env=env)
    assert settings.auth == "on" and settings.api.host == "0.0.0.0"
    assert [p.role for p in settings.principals] == ["admin"]
    assert settings.producers[0].token is not None
    assert settings.producers[0].token.get_secret_value() == env["BATON_PRODUCER_TOKEN"]
