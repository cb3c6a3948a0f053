"""Small pieces every Redis-side module uses: loading a Lua script, decoding a reply."""

from __future__ import annotations

from importlib import resources

from redis.asyncio import Redis
from redis.commands.core import AsyncScript


def script(redis: Redis, name: str) -> AsyncScript:
    """`lua/<name>.lua`, registered on `redis` (EVALSHA, loaded again if flushed)."""
    source = resources.files("broker.state").joinpath(f"lua/{name}.lua").read_text()
    return redis.register_script(source)


def text(value: bytes | str) -> str:
    """A Redis reply item as text, whether or not the client decodes responses."""
    return value.decode() if isinstance(value, bytes) else value
