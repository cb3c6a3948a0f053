"""Floor 8, the HTTP API: one module per resource, the access policy, the status page.

An entry point: `app.create_app` wires it onto a `broker.runtime.Runtime`.
"""
