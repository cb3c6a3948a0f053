"""The `baton` command line as a user meets it."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Cluster

GOOD = "name: ok\npartitioned: daily\nwhen: a\ntrigger: {target: hook}\n"
BROKEN = "name: broken\npartitioned: daily\nwhen: a\ntrigger:\n  target: hook\n  colour: red\n"


def test_check_accepts_a_good_folder(cluster: Cluster) -> None:
    cluster.write_contracts({"ok.yaml": GOOD})
    cluster.write_config("http://127.0.0.1:9")
    result = cluster.cli("check")
    assert result.returncode == 0
    assert "1 contract OK" in result.stdout


def test_check_names_file_and_line_and_exits_1(cluster: Cluster) -> None:
    folder = cluster.write_contracts({"ok.yaml": GOOD, "broken.yaml": BROKEN})
    cluster.write_config("http://127.0.0.1:9")
    result = cluster.cli("check", check=False)
    assert result.returncode == 1
    assert f"{folder / 'broken.yaml'}:6:" in result.stderr
    assert "colour" in result.stderr


def test_run_refuses_a_broken_contract_set(cluster: Cluster) -> None:
    cluster.write_contracts({"broken.yaml": BROKEN})
    cluster.write_config("http://127.0.0.1:9")
    result = cluster.cli("run", check=False)
    assert result.returncode == 1
    assert "contracts rejected" in result.stderr


def test_schema_is_json_schema_for_the_contract_format(cluster: Cluster) -> None:
    schema = json.loads(cluster.cli("schema").stdout)
    text = json.dumps(schema)
    assert "all_of" in text and "any_of" in text and "on_restatement" in text


def test_publish_rejects_a_meta_without_equals(cluster: Cluster) -> None:
    cluster.write_contracts({"ok.yaml": GOOD})
    cluster.write_config("http://127.0.0.1:9")
    result = cluster.cli("publish", "a", "--meta", "rows", check=False)
    assert result.returncode == 2
    assert "'rows' is not KEY=VALUE" in result.stderr


def test_a_config_with_an_unknown_setting_is_named(tmp_path: Path, cluster: Cluster) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("api: {host: 127.0.0.1, prot: 8000}\n")
    result = cluster.cli("--config", str(bad), "check", check=False)
    assert result.returncode == 1
    assert "api.prot" in result.stderr


def test_binding_beyond_loopback_without_producers_is_refused(cluster: Cluster) -> None:
    cluster.write_contracts({"ok.yaml": GOOD})
    cluster.write_config("http://127.0.0.1:9", api={"host": "0.0.0.0", "port": 18999})
    result = cluster.cli("api", check=False)
    assert result.returncode == 1
    assert "auth: off" in result.stderr
