"""GET /: a plain status page: contracts and what their waiting partitions wait for, recent
triggers with links to the downstream runs, dead letters, and the dependency graph.

No JavaScript and nothing fetched from elsewhere: the graph is a table of who feeds whom,
with its Mermaid source (`baton graph`) to paste where Mermaid renders."""

from __future__ import annotations

from html import escape
from typing import Any

from broker.contracts.check import target_kinds
from broker.contracts.graph import Graph, build, mermaid, node_name
from broker.contracts.model import Contract
from broker.control.explain import explain
from broker.control.pause import paused
from broker.matching.loaded import Contracts
from broker.runtime import Runtime

WAITING_SHOWN = 5  # waiting partitions per contract, newest first


async def status_page(runtime: Runtime, loaded: Contracts, request: Any = None) -> str:
    contracts = loaded.by_name()
    graph = build(contracts.values(), target_kinds(runtime.settings))
    held = await paused(runtime.store)
    return _PAGE.format(
        version=escape(loaded.version),
        who=_signed_in(request),
        contracts="".join(
            [await _contract_row(runtime, c, held.get(n)) for n, c in sorted(contracts.items())]
        ),
        triggers=await _triggers(runtime) or _none(6),
        dead=await _dead_letters(runtime) or _none(3),
        edges="".join(
            f"<tr><td>{escape(_shown(graph, e.source))}</td><td>{escape(e.label)}</td>"
            f"<td>{escape(_shown(graph, e.target))}</td></tr>"
            for e in graph.edges
        ),
        mermaid=escape(mermaid(graph)),
    )


def _signed_in(request: Any) -> str:
    """Who is looking, and (signed in by cookie) the sign-out form with its CSRF token."""
    state = getattr(request, "state", None)
    principal = getattr(state, "principal", None)
    if principal is None:
        return ""
    session = getattr(state, "session", None)
    form = (
        '<form method="post" action="/logout" style="display:inline">'
        f'<input type="hidden" name="csrf_token" value="{escape(session.csrf, quote=True)}">'
        '<button type="submit">sign out</button></form>'
        if session is not None
        else ""
    )
    return f" &middot; {escape(principal.name)} ({escape(principal.role)}) {form}"


def _paused_note(record: dict[str, str] | None) -> str:
    if record is None:
        return ""
    return f"paused by {record.get('by', '?')} at {record.get('at', '?')[:19]}"


async def _contract_row(
    runtime: Runtime, contract: Contract, paused_by: dict[str, str] | None = None
) -> str:
    store = runtime.store
    waiting: list[str] = []
    for item in await store.partitions_of(contract.name, limit=50):
        if len(waiting) == WAITING_SHOWN:
            break
        if item["fired"]:
            continue
        state = await store.read_partition(contract.name, str(item["partition"]))
        report = explain(contract, str(item["partition"]), state, None, None)
        missing = [f"{i.dataset}[{i.partition}]" if i.partition else i.dataset
                   for i in report.inputs if i.state != "satisfied"]  # fmt: skip
        waiting.append(f"{item['partition'] or '(all)'}: waits for {', '.join(missing)}")
    return (
        f"<tr><td>{escape(contract.name)}</td><td>{escape(contract.owner or '')}</td>"
        f"<td>{escape(str(contract.partitioned))}</td>"
        f"<td>{escape(', '.join(sorted(contract.input_datasets())))}</td>"
        f"<td>{escape(contract.trigger.target)}</td>"
        f"<td>{escape(_paused_note(paused_by))}</td>"
        f"<td>{'<br>'.join(escape(w) for w in waiting)}</td></tr>"
    )


async def _triggers(runtime: Runtime) -> str:
    rows = []
    for t in await runtime.store.recent_triggers(20):
        ref = escape(t.downstream_ref)
        if t.downstream_url.startswith(("http://", "https://")):
            ref = f'<a href="{escape(t.downstream_url)}">{ref or "run"}</a>'
        rows.append(
            f"<tr><td>{escape(t.id)}</td><td>{escape(t.state)}</td><td>{t.attempts}</td>"
            f"<td>{ref}</td><td>{escape(t.run_state)}</td><td>{escape(t.last_error)}</td></tr>"
        )
    return "".join(rows)


async def _dead_letters(runtime: Runtime) -> str:
    return "".join(
        f"<tr><td>{escape(d.trigger_id)}</td><td>{escape(d.at)}</td><td>{escape(d.error)}</td></tr>"
        for d in await runtime.store.dead_letters(20)
    )


def _none(columns: int) -> str:
    return f"<tr><td colspan={columns}>none</td></tr>"


def _shown(graph: Graph, node: str) -> str:
    return f"{node_name(node)} ({graph.nodes[node]})"


_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Baton</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.2em .8em;text-align:left;
vertical-align:top}}</style>
</head><body><h1>Baton</h1><p>contracts version {version} &middot;
<a href="/docs">API</a> &middot; <a href="/v1/contracts">contracts (JSON)</a>{who}</p>
<h2>Contracts</h2><table><tr><th>name</th><th>owner</th><th>partitioned</th><th>inputs</th>
<th>target</th><th>paused</th><th>waiting partitions</th></tr>{contracts}</table>
<h2>Recent triggers</h2><table><tr><th>id</th><th>state</th><th>attempts</th>
<th>downstream run</th><th>run state</th><th>last error</th></tr>{triggers}</table>
<h2>Dead letters</h2><p><code>baton dlq retry ID</code> sends one again.</p>
<table><tr><th>trigger</th><th>at</th><th>error</th></tr>{dead}</table>
<h2>Dependency graph</h2><table><tr><th>from</th><th>how</th><th>to</th></tr>{edges}</table>
<details><summary>Mermaid source (<code>baton graph</code>)</summary><pre>{mermaid}</pre>
</details></body></html>"""
