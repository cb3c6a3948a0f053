"""GET /: a plain status page: contracts, waiting partitions, recent triggers."""

from __future__ import annotations

from html import escape

from broker.runtime import Contracts, Runtime


async def status_page(runtime: Runtime, loaded: Contracts) -> str:
    store = runtime.store
    rows = []
    for name, contract in sorted(loaded.by_name().items()):
        partitions = await store.partitions_of(name, limit=5)
        waiting = ", ".join(p["partition"] or "(all)" for p in partitions if not p["fired"])
        rows.append(
            f"<tr><td>{escape(name)}</td><td>{escape(str(contract.partitioned))}</td>"
            f"<td>{escape(', '.join(sorted(contract.input_datasets())))}</td>"
            f"<td>{escape(contract.trigger.target)}</td><td>{escape(waiting)}</td></tr>"
        )
    triggers = [
        f"<tr><td>{escape(t.id)}</td><td>{escape(t.state)}</td><td>{t.attempts}</td>"
        f"<td>{escape(t.downstream_ref)}</td><td>{escape(t.last_error)}</td></tr>"
        for t in await store.recent_triggers(20)
    ]
    return _PAGE.format(
        version=escape(loaded.version),
        contracts="".join(rows),
        triggers="".join(triggers) or "<tr><td colspan=5>none yet</td></tr>",
    )


_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Baton</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.2em .8em;text-align:left}}</style>
</head><body><h1>Baton</h1><p>contracts version {version} &middot;
<a href="/docs">API</a></p>
<h2>Contracts</h2><table><tr><th>name</th><th>partitioned</th><th>inputs</th>
<th>target</th><th>waiting partitions</th></tr>{contracts}</table>
<h2>Recent triggers</h2><table><tr><th>id</th><th>state</th><th>attempts</th>
<th>downstream</th><th>last error</th></tr>{triggers}</table></body></html>"""
