"""Floor 7, the adapters: one module per orchestrator, the trigger side; `publish/`, the task side.

The trigger side implements `broker.dispatch.target.Target`; the publish side runs in
the orchestrators' own environments and needs only httpx and pydantic.
"""
