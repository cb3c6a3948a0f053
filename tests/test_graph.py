"""`baton graph`: every input, trigger and `produces` of the contracts is an edge, and the
DOT and Mermaid texts hold up with names and filters that need quoting."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pydot
import pytest
import yaml

from broker.contracts.folder import load_contracts
from broker.contracts.graph import Edge, build, dot, mermaid
from tests.conftest import BATON, ROOT

TARGETS = {"example-hook": "webhook", "airflow-prod": "airflow"}
QUOTED = """name: quoted
partitioned: daily
when:
  all_of:
    - dataset: raw.events
      partitioned: hourly
      where: 'metadata.kind == "full" and metadata.path != "a\\\\b"'
    - {dataset: warehouse.customers, offset: -1}
trigger: {target: airflow-prod, dag_id: quoted_dag}
"""


def example_graph() -> tuple[dict[str, str], list[Edge]]:
    contract_set, errors = load_contracts(ROOT / "contracts")
    assert errors == []
    graph = build(contract_set.by_name().values(), TARGETS)
    return graph.nodes, graph.edges


def test_the_examples_graph_has_every_input_trigger_and_product() -> None:
    nodes, edges = example_graph()
    assert set(edges) == {
        Edge("d:reports.revenue", "c:dashboard_refresh"),
        Edge("c:dashboard_refresh", "t:example-hook", "webhook"),
        Edge("d:warehouse.orders", "c:orders_quality", "any of"),
        Edge("d:staging.orders_backfill", "c:orders_quality", "any of"),
        Edge("c:orders_quality", "t:example-hook", "webhook"),
        Edge("d:warehouse.orders", "c:revenue_report"),
        Edge("d:warehouse.fx_rates", "c:revenue_report", "where metadata.row_count > 0"),
        Edge("c:revenue_report", "t:example-hook", "webhook"),
        Edge("c:revenue_report", "d:reports.revenue", "produces"),
    }
    assert nodes["d:reports.revenue"] == "dataset" and nodes["t:example-hook"] == "target"


def quoted_graph(tmp_path: Path) -> tuple[str, str]:
    (tmp_path / "q.yaml").write_text(QUOTED)
    contract_set, errors = load_contracts(tmp_path)
    assert errors == []
    graph = build(contract_set.by_name().values(), TARGETS)
    return dot(graph), mermaid(graph)


# pydot 4.0.1's parser still calls pyparsing's old names, which warn.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_dot_parses_and_keeps_labels_with_quotes_and_backslashes(tmp_path: Path) -> None:
    text, _ = quoted_graph(tmp_path)
    [parsed] = pydot.graph_from_dot_data(text)
    labels = {n.get_label().strip('"') for n in parsed.get_nodes() if n.get_label()}
    assert labels == {"quoted", "raw.events", "warehouse.customers", "airflow-prod"}
    edge_labels = {_unescape(e.get_label()) for e in parsed.get_edges()}
    contract_set, _ = load_contracts(tmp_path)
    where = contract_set.by_name()["quoted"].inputs()[0].where
    assert where is not None and '"' in where and "\\" in where
    assert edge_labels == {f"hourly, where {where}", "offset -1", "quoted_dag"}


def _unescape(label: str) -> str:
    """A DOT quoted string back to its text (pydot keeps the quotes and escapes)."""
    return re.sub(r"\\(.)", r"\1", label[1:-1])


def test_mermaid_defines_each_node_once_and_quotes_every_label(tmp_path: Path) -> None:
    _, text = quoted_graph(tmp_path)
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    defined = [m.group(1) for line in lines if (m := re.match(r"  (\w+)[\[{(]", line))]
    assert len(defined) == len(set(defined)) == 4
    for line in lines:
        if "-->" in line:
            source, *_, target = line.split()
            assert source in defined and target in defined
    assert "metadata.kind == #quot;full#quot;" in text
    assert all(line.count('"') % 2 == 0 for line in lines)


def test_baton_graph_prints_mermaid_or_dot_and_refuses_a_broken_set(tmp_path: Path) -> None:
    config = tmp_path / "baton.yaml"
    config.write_text(yaml.safe_dump({"targets": {"airflow-prod": {
        "kind": "airflow", "url": "http://127.0.0.1:9"}}}))  # fmt: skip
    folder = tmp_path / "contracts"
    folder.mkdir()
    (folder / "q.yaml").write_text(QUOTED)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([BATON, "--config", str(config), "graph", str(folder), *args],
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip

    assert run().stdout.startswith("flowchart LR")
    assert run("--format", "dot").stdout.startswith("digraph baton {")
    (folder / "bad.yaml").write_text("name: bad\nwhen: x\ntrigger: {target: nowhere}\n")
    refused = run()
    assert refused.returncode == 1
    assert "bad.yaml:3: trigger.target: unknown target 'nowhere'" in refused.stderr
